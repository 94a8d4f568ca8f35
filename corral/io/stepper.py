"""Run request coroutines without creating a Task unless they suspend.

Most requests of a fast app complete without ever waiting: creating an
``asyncio.Task`` for each (allocation, ``call_soon``, one more loop pass) is
pure overhead. ``Stepper.run`` steps the coroutine directly instead.

Libraries such as anyio key state on ``asyncio.current_task()`` and expect the
same task for the whole life of a coroutine. So every step runs *as* a real
Task: a parked "reserve" task is made current while the coroutine is stepped
(``_enter_task``). If the coroutine finishes, the reserve stays parked for the
next request; if it suspends, the reserve task adopts it and drives it from
there on, so ``current_task()`` never changes under the app's feet, and a new
reserve is made for later requests. Each coroutine also keeps its own
``contextvars`` context across the hand-over.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import logging

_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task
_copy_context = contextvars.copy_context
_NOTHING = object()

log = logging.getLogger("corral.error")


class _Slot(collections.abc.Coroutine):
    """The coroutine a reserve Task runs: parked until handed a coroutine."""

    __slots__ = ("loop", "coro", "owner", "first", "ctx", "parked")

    def __init__(self, loop) -> None:
        self.loop = loop
        self.coro = None
        self.owner = None
        self.first = _NOTHING
        self.ctx = None
        self.parked = None

    def send(self, value):
        coro = self.coro
        if coro is None:
            parked = self.parked = self.loop.create_future()
            parked._asyncio_future_blocking = True
            return parked
        first = self.first
        if first is not _NOTHING:
            # Give the Task what the coroutine yielded in its untasked step.
            self.first = _NOTHING
            return first
        try:
            return self.ctx.run(coro.send, value)
        except BaseException as exc:
            self._finished(exc)

    def throw(self, typ, val=None, tb=None):
        coro = self.coro
        if coro is None:
            return self.send(None)  # cancelled while parked: park again
        self.first = _NOTHING
        try:
            if val is None and tb is None:
                return self.ctx.run(coro.throw, typ)
            return self.ctx.run(coro.throw, typ, val, tb)
        except BaseException as exc:
            self._finished(exc)

    def _finished(self, exc: BaseException):
        """The coroutine ended (returned or raised): tell its owner, end the Task."""
        if isinstance(exc, StopIteration):
            self.ctx.run(self.owner.app_returned)
        else:
            self.ctx.run(self.owner.app_raised, exc)
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise exc
        raise StopIteration

    def close(self):
        if self.coro is not None:
            self.coro.close()

    def __await__(self):  # pragma: no cover - required by the ABC, never awaited
        raise TypeError("_Slot is driven by its Task only")


class Stepper:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task | None = None
        self._slot: _Slot | None = None
        self.tasks_created = 0  # how many coroutines suspended (for tests/stats)
        self.stepping = False  # True while a coroutine is stepped outside a task

    def _new_reserve(self):
        slot = _Slot(self._loop)
        task = asyncio.Task(slot, loop=self._loop)
        self._task, self._slot = task, slot
        return task, slot

    def run(self, coro, owner) -> None:
        """Step ``coro``; when it ends, call ``owner.app_returned()`` or
        ``owner.app_raised(exc)`` (in the coroutine's context).

        Must be called from a loop callback, not from inside a running task
        (schedule it with ``loop.call_soon`` from there).
        """
        loop = self._loop
        task = self._task
        if task is None:
            task, slot = self._new_reserve()
        ctx = _copy_context()
        _enter_task(loop, task)
        self.stepping = True
        try:
            try:
                yielded = ctx.run(coro.send, None)
            except StopIteration:
                ctx.run(owner.app_returned)
                return
            except BaseException as exc:
                ctx.run(owner.app_raised, exc)
                if not isinstance(exc, (Exception, asyncio.CancelledError)):
                    raise
                return
        finally:
            self.stepping = False
            _leave_task(loop, task)
        # Suspended: the reserve task adopts the coroutine from here on.
        slot = self._slot
        slot.coro, slot.owner, slot.first, slot.ctx = coro, owner, yielded, ctx
        self._task = self._slot = None
        self.tasks_created += 1
        parked = slot.parked
        if parked is not None:
            parked.set_result(None)

    def close(self) -> None:
        if self._task is not None:
            # The parked reserve holds no app code; it re-parks when cancelled
            # and the loop closes next: drop it without asyncio's warning.
            self._task._log_destroy_pending = False
            self._task.cancel()
            self._task = self._slot = None
