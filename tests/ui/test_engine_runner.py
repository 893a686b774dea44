"""The chat server's engine runner: a turn's events in order, errors passed on, and a new
turn's first step served before the next events of turns already streaming."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
import threading
import time

import pytest

from app.bots.engine import StepDone, StepStarted, TurnStarted
from app.ui.engine_runner import EngineRunner


def _started(name: str) -> StepStarted:
    return StepStarted(index=0, name=name, step_id=f"{name}-0")


def run_fresh(main):
    """asyncio.run in a thread of its own: another test may have left an event loop running here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def test_events_arrive_in_order_and_errors_reach_the_reader() -> None:
    def turn():
        yield TurnStarted(turn_id="t", character_id="holmes", backend="offline", offline=True)
        yield _started("Observe")

    def broken():
        yield _started("Observe")
        raise RuntimeError("the library went away")

    async def main():
        runner = EngineRunner(workers=2)
        events = [type(e).__name__ async for e in runner.events(turn())]
        got = []
        with pytest.raises(RuntimeError, match="library went away"):
            async for event in runner.events(broken()):
                got.append(event)
        return events, got

    events, got = run_fresh(main)
    assert events == ["TurnStarted", "StepStarted"]
    assert len(got) == 1


def test_a_new_turn_goes_ahead_of_turns_already_streaming() -> None:
    """One worker; turns a, b and c have shown their first steps, a's next event holds the
    worker and b's and c's wait.  Then a new turn n asks for its first step: it is served
    before b's and c's next events."""
    advanced: list[str] = []
    gate = threading.Event()

    def streaming(name: str, hold: bool = False):
        yield _started(name)
        if hold:
            gate.wait(10)
        advanced.append(name)
        yield StepDone(step=None)  # type: ignore[arg-type]

    def new_turn():
        advanced.append("n")
        yield _started("n")

    async def consume(runner: EngineRunner, iterator) -> None:
        async for _ in runner.events(iterator):
            pass

    async def main():
        runner = EngineRunner(workers=1)
        tasks = [asyncio.create_task(consume(runner, streaming("a", hold=True)))]
        tasks += [asyncio.create_task(consume(runner, streaming(name))) for name in "bc"]
        deadline = time.monotonic() + 10
        while len(runner.pool._queue) < 2 or advanced:      # a's next event holds the worker, b's and c's wait
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        tasks.append(asyncio.create_task(consume(runner, new_turn())))
        while len(runner.pool._queue) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        gate.set()
        await asyncio.gather(*tasks)

    run_fresh(main)
    assert advanced == ["a", "n", "b", "c"]
