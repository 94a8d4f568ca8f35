"""Driving a real loop from an io-tier test: the one place that steps it
until a condition holds, or lets it idle a few passes (``conftest.Pair``
for HTTP/1.1 and WebSocket, ``h2io.H2Pair`` for HTTP/2)."""

from __future__ import annotations

import asyncio


def run_until(loop, condition, read, timeout: float, what: str, seen) -> None:
    """Run ``loop`` until ``condition()`` holds, calling ``read()`` (the
    clients take what arrived) on every pass; ``seen()`` describes what the
    clients got when it times out."""
    deadline = loop.time() + timeout

    async def wait():
        while True:
            read()
            if condition():
                return
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; {seen()}")
            await asyncio.sleep(0.001)  # the loop's turn: the poll interval of this wait

    loop.run_until_complete(wait())


def spin(loop, passes: int = 20) -> None:
    """Let the loop run a few passes (to assert that nothing more happens)."""

    async def idle():
        for _ in range(passes):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        for _ in range(passes):
            await asyncio.sleep(0)

    loop.run_until_complete(idle())
