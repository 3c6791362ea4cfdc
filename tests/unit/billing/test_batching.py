import asyncio

import pytest

from services.billing.batching import Batcher


class Recorder:
    def __init__(self, fail_on: set[int] | None = None, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on or set()
        self.delay = delay

    async def process(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(self.delay)
        return [ValueError(item) if item in self.fail_on else item * 2 for item in items]


async def test_concurrent_submissions_share_batches_and_get_their_own_results() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher(recorder.process, max_size=50)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(n) for n in range(200)))
    finally:
        await batcher.stop()
    assert results == [n * 2 for n in range(200)]
    assert sorted(n for batch in recorder.batches for n in batch) == list(range(200))
    assert all(len(batch) <= 50 for batch in recorder.batches)
    assert len(recorder.batches) < 20  # they were batched, not one by one


async def test_a_lone_item_is_processed_at_once() -> None:
    recorder = Recorder(delay=0)
    batcher: Batcher[int, int] = Batcher(recorder.process, max_size=50)
    batcher.start()
    try:
        assert await asyncio.wait_for(batcher.submit(21), timeout=1) == 42
    finally:
        await batcher.stop()


async def test_a_per_item_error_reaches_only_its_submitter() -> None:
    recorder = Recorder(fail_on={3})
    batcher: Batcher[int, int] = Batcher(recorder.process, max_size=50)
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.submit(n) for n in range(6)), return_exceptions=True
        )
    finally:
        await batcher.stop()
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 2, 4, 8, 10]


async def test_a_failing_batch_fails_every_submitter_of_it() -> None:
    async def explode(items: list[int]) -> list[int]:
        raise RuntimeError("database gone")

    batcher: Batcher[int, int] = Batcher(explode, max_size=10)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="database gone"):
            await batcher.submit(1)
    finally:
        await batcher.stop()


async def test_stopping_cancels_what_is_still_waiting() -> None:
    started = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(10)
        return items

    batcher: Batcher[int, int] = Batcher(slow, max_size=10)
    batcher.start()
    waiting = asyncio.create_task(batcher.submit(1))
    await started.wait()
    await batcher.stop()
    with pytest.raises(asyncio.CancelledError):
        await waiting
