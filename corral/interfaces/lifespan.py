"""ASGI lifespan: startup before a worker reports ready, shutdown last.

``mode`` is the ``--lifespan`` option: ``on`` requires the app to support
the protocol, ``auto`` runs it if the app does (an app that raises before
answering ``lifespan.startup`` is taken not to support it), ``off`` skips it.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("corral.error")


class LifespanFailure(Exception):
    """Startup failed: the worker must not serve."""


class Lifespan:
    def __init__(self, app, mode: str, state: dict) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.supported = mode != "off"
        self._queue: asyncio.Queue = asyncio.Queue()
        self._answers: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._error: BaseException | None = None

    async def startup(self) -> None:
        if not self.supported:
            return
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._queue.put({"type": "lifespan.startup"})
        kind, message = await self._answers.get()
        if kind == "lifespan.startup.failed":
            raise LifespanFailure(f"lifespan startup failed: {message or 'no message'}")
        if kind == "error":
            if self.mode == "on":
                raise LifespanFailure(f"lifespan startup raised {message}")
            self.supported = False
            log.info("ASGI lifespan unsupported by the app (%s); continuing without it", message)

    async def shutdown(self, timeout: float) -> None:
        if not self.supported or self._task is None:
            return
        await self._queue.put({"type": "lifespan.shutdown"})
        try:
            kind, message = await asyncio.wait_for(self._answers.get(), timeout or None)
        except asyncio.TimeoutError:
            log.error("lifespan shutdown did not finish within %.1fs", timeout)
            self._task.cancel()
            return
        if kind == "lifespan.shutdown.failed":
            log.error("lifespan shutdown failed: %s", message or "no message")
        elif kind == "error":
            log.error("lifespan shutdown raised %s", message)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._queue.get, self._send)
        except BaseException as exc:  # noqa: BLE001 - reported through the answers queue
            detail = f"{type(exc).__name__}: {exc}"
            if self.mode == "on" or self._answers.empty():
                log.debug("lifespan raised", exc_info=exc)
            self._answers.put_nowait(("error", detail))
            if not isinstance(exc, Exception):
                raise
        else:
            # Returned without answering (e.g. "if scope['type'] != 'http': return").
            self._answers.put_nowait(("error", "the app returned from the lifespan scope"))

    async def _send(self, message) -> None:
        kind = message["type"]
        if kind not in {
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        }:
            raise RuntimeError(f"ASGI: unexpected lifespan message type {kind!r}")
        self._answers.put_nowait((kind, message.get("message", "")))
