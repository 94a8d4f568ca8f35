"""corral.interfaces.asgi.is_disconnect: which exceptions of an app, raised
once its client has gone, mean only that (logged at DEBUG) and which are
defects (logged as errors). The end-to-end tests are
tests/integration/test_compat_fastapi.py (TestClientLeaves)."""

import asyncio
import sys

import pytest

from corral.interfaces.asgi import is_disconnect

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio brings on 3.10
    exceptiongroup = pytest.importorskip("exceptiongroup", reason="the exceptiongroup backport (anyio's dependency)")
    BaseExceptionGroup, ExceptionGroup = exceptiongroup.BaseExceptionGroup, exceptiongroup.ExceptionGroup
else:
    BaseExceptionGroup, ExceptionGroup = BaseExceptionGroup, ExceptionGroup  # noqa: PLW0127


class ClientDisconnect(Exception):  # as Starlette names it
    pass


class WebSocketDisconnect(Exception):
    pass


class StarletteSubclass(ClientDisconnect):
    pass


@pytest.mark.parametrize("exc", [
    ConnectionResetError("client disconnected"),
    BrokenPipeError(),
    OSError("gone"),
    asyncio.CancelledError(),
    ClientDisconnect(),
    StarletteSubclass(),
    WebSocketDisconnect(1006),
    ExceptionGroup("task group", [ClientDisconnect(), ConnectionResetError()]),
    BaseExceptionGroup("nested", [ExceptionGroup("inner", [OSError()]), asyncio.CancelledError()]),
], ids=lambda exc: type(exc).__name__)
def test_disconnects(exc):
    assert is_disconnect(exc)


@pytest.mark.parametrize("exc", [
    RuntimeError("a defect"),
    KeyError("x"),
    ExceptionGroup("task group", [ClientDisconnect(), ValueError("a defect beside it")]),
], ids=lambda exc: type(exc).__name__)
def test_defects(exc):
    assert not is_disconnect(exc)


def test_a_defect_raised_while_handling_a_disconnect_is_a_defect():
    try:
        try:
            raise ConnectionResetError("client disconnected")
        except OSError:
            raise LookupError("a defect while cleaning up")  # noqa: B904
    except LookupError as exc:
        assert not is_disconnect(exc)
