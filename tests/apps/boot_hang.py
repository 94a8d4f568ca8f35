"""An app whose import never finishes (a hung connect at import time)."""

import time

time.sleep(3600)


async def app(scope, receive, send):  # pragma: no cover - never reached
    raise RuntimeError("unreachable")
