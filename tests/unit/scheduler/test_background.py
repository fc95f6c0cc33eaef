"""BackgroundTasks keeps, logs, single-flights and stops fire-and-forget work."""

from __future__ import annotations

import asyncio

import pytest

from scheduler.background import BackgroundTasks, KeyedLocks


async def test_a_keyed_task_runs_once_at_a_time() -> None:
    tasks = BackgroundTasks("resend")
    gate = asyncio.Event()
    runs: list[int] = []

    async def resend() -> None:
        runs.append(1)
        await gate.wait()

    assert tasks.spawn(resend(), key=7)
    assert not tasks.spawn(resend(), key=7)  # the second tap finds it running
    assert tasks.running(7)
    gate.set()
    await tasks.wait(7)
    assert runs == [1] and not tasks.running(7) and len(tasks) == 0
    assert tasks.spawn(resend(), key=7)  # free again once done
    await tasks.wait(7)


async def test_errors_are_logged_and_stop_cancels_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks("engine")
    cancelled: list[int] = []

    async def fails() -> None:
        raise ValueError("lost download")

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.append(1)

    tasks.spawn(fails(), name="store-1")
    tasks.spawn(forever())
    await asyncio.sleep(0.01)
    assert "store-1 failed" in caplog.text and "lost download" in caplog.text
    await tasks.stop()
    assert cancelled == [1] and len(tasks) == 0
    assert not tasks.spawn(forever())  # nothing starts after stop


async def test_wait_any_returns_when_one_finishes_and_it_is_no_longer_counted() -> None:
    tasks = BackgroundTasks("creates")
    gates = [asyncio.Event(), asyncio.Event()]

    async def create(gate: asyncio.Event) -> None:
        await gate.wait()

    await tasks.wait_any()  # nothing runs: no wait
    for gate in gates:
        tasks.spawn(create(gate))
    waiting = asyncio.create_task(tasks.wait_any())
    await asyncio.sleep(0.01)
    assert not waiting.done() and len(tasks) == 2
    gates[0].set()
    await asyncio.wait_for(waiting, 1)
    assert len(tasks) == 1  # a bound on work in flight sees the room at once
    gates[1].set()
    await tasks.stop()


async def test_keyed_locks_serialise_one_key_let_others_through_and_forget_an_unused_key() -> None:
    locks, order = KeyedLocks(), []

    async def use(key: str, name: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            await asyncio.sleep(pause)
            order.append(f"{name} out")

    await asyncio.gather(use("a", "first", 0.05), use("a", "second", 0), use("b", "other", 0))
    assert order.index("first out") < order.index("second in")  # the same key waits its turn
    assert order.index("other in") < order.index("first out")  # another key does not
    assert len(locks) == 0
