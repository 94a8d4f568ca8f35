"""The Stepper runs a request coroutine without a Task until it suspends,
and current_task() stays the same Task across the hand-over (no sockets)."""

import asyncio
import contextvars

import pytest

from corral.io.stepper import Stepper


class Owner:
    def __init__(self):
        self.returned = 0
        self.raised = []

    def app_returned(self):
        self.returned += 1

    def app_raised(self, exc):
        self.raised.append(exc)


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_from_callback(loop, func):
    """Stepper.run must be called from a loop callback, as data_received is."""
    loop.call_soon(func)
    loop.call_soon(loop.stop)
    loop.run_forever()


def run_until(loop, condition, timeout=5.0):
    """Run the loop until ``condition()`` holds (no fixed wait)."""

    async def wait():
        deadline = loop.time() + timeout
        while not condition():
            assert loop.time() < deadline, "timed out"
            await asyncio.sleep(0.001)

    loop.run_until_complete(wait())


def test_a_coroutine_that_never_waits_creates_no_task(loop):
    stepper, owner, seen = Stepper(loop), Owner(), []

    async def app():
        seen.append(asyncio.current_task())

    def start():
        for _ in range(3):
            stepper.run(app(), owner)

    run_from_callback(loop, start)
    assert owner.returned == 3 and owner.raised == []
    assert stepper.tasks_created == 0
    assert seen[0] is not None and seen[0] is seen[1] is seen[2]  # the parked reserve task
    stepper.close()


def test_a_suspending_coroutine_keeps_its_task_and_context(loop):
    stepper, owner, seen = Stepper(loop), Owner(), []
    var = contextvars.ContextVar("var")

    async def app():
        var.set("mine")
        seen.append(asyncio.current_task())
        await asyncio.sleep(0.01)
        seen.append(asyncio.current_task())
        seen.append(var.get())

    run_from_callback(loop, lambda: stepper.run(app(), owner))
    run_until(loop, lambda: owner.returned or owner.raised)
    assert stepper.tasks_created == 1
    assert owner.returned == 1
    assert seen[0] is seen[1] and seen[2] == "mine"
    assert var.get(None) is None  # the app's context did not leak into the caller's


def test_an_exception_reaches_the_owner(loop):
    stepper, owner = Stepper(loop), Owner()

    async def app():
        raise ValueError("boom")

    async def app_later():
        await asyncio.sleep(0)
        raise KeyError("later")

    run_from_callback(loop, lambda: (stepper.run(app(), owner), stepper.run(app_later(), owner)))
    run_until(loop, lambda: len(owner.raised) == 2)
    assert [type(e) for e in owner.raised] == [ValueError, KeyError]
    stepper.close()
