"""``transactions.run_to_end``: the shield of COMMIT, without a task of its own.

A coroutine run through it completes whatever cancels the task meanwhile; the
cancellation is then pending again, counted once, and raised at the next await.
"""

from __future__ import annotations

import asyncio

import pytest

from peewee_async.transactions import run_to_end


async def test_cancelled_twice_while_waiting_finishes_then_raises() -> None:
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0)
        steps.append("sent")
        value = await answer  # the driver's future: never cancelled
        steps.append("answered")
        return value

    async def caller() -> None:
        value = await run_to_end(slow())
        # Finished, with both cancel() calls counted (as a plain await counts them).
        steps.append(f"{value}, cancelling={asyncio.current_task().cancelling()}")  # type: ignore[union-attr]
        await asyncio.sleep(3600)  # the pending cancellation is raised here
        steps.append("not cancelled")

    task = asyncio.ensure_future(caller())
    for _ in range(3):
        await asyncio.sleep(0)
    assert steps == ["sent"]
    task.cancel("first")
    await asyncio.sleep(0)
    task.cancel("second")
    await asyncio.sleep(0)
    assert not answer.cancelled()
    answer.set_result("ok")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["sent", "answered", "ok, cancelling=2"]


async def test_result_and_errors_pass_through() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("from the driver")

    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    assert await run_to_end(value()) == 7
    with pytest.raises(ValueError, match="from the driver"):
        await run_to_end(fails())
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(OSError("reset"))

    async def awaits_failed() -> None:
        await failed

    with pytest.raises(OSError, match="reset"):
        await run_to_end(awaits_failed())


async def test_uncancelled_caller_is_not_cancelled_afterwards() -> None:
    async def value() -> int:
        await asyncio.sleep(0.01)
        return 1

    assert await run_to_end(value()) == 1
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0)  # nothing pending
