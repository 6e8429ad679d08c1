"""Concurrent intents are routed in batches: one worker job, one route_many call."""

from __future__ import annotations

from typing import Any

from aios.abi.errors import Busy
from aios.kmod.semantic_ipcd.core import SemanticRouter
from aios.kmod.semantic_ipcd.service import _IntentBatch
from aios.lib.vectors.embedding import HashingEmbedder


class CountingRouter(SemanticRouter):
    def __init__(self) -> None:
        super().__init__(HashingEmbedder(), threshold=0.2, margin=0.05)
        self.calls: list[int] = []

    def route_many(self, items: list[tuple[str, str, Any]], **kw: Any) -> list[Any]:
        self.calls.append(len(items))
        return super().route_many(items, **kw)


class FakeFabric:
    """Runs nothing until told: the test decides when the worker picks the job up."""

    def __init__(self, router: SemanticRouter) -> None:
        self._router = router
        self.jobs: list[tuple[Any, tuple[Any, ...], Any]] = []

    def router(self) -> SemanticRouter:
        return self._router

    def run(self, fn: Any, args: tuple[Any, ...], on_done: Any) -> None:
        self.jobs.append((fn, args, on_done))

    def _as_error(self, exc: BaseException) -> Any:
        return exc if isinstance(exc, Busy) else Busy(str(exc))

    def work(self) -> None:
        fn, args, on_done = self.jobs.pop(0)
        on_done(fn(*args), None)


def test_intents_queued_while_the_worker_is_busy_share_one_batch() -> None:
    r = CountingRouter()
    r.register("wx", "weather", "weather forecast rain temperature",
               ["will it rain tomorrow", "temperature in paris"])
    r.register("bank", "finance", "bank account balance transfer money",
               ["what is my balance", "transfer money to savings"])
    fab = FakeFabric(r)
    batch = _IntentBatch()
    got: list[tuple[str, Any]] = []
    texts = ["will it rain in rome", "what is my balance now", "temperature in oslo",
             "transfer money to alice"]
    for t in texts:
        batch.add(None, fab, ("s", t, None, False, {},  # type: ignore[arg-type]
                              lambda d, e, t=t: got.append((t, d.targets[0].skill if d else e))))
    assert len(fab.jobs) == 1  # one job scheduled for all four
    fab.work()
    assert r.calls == [4] and batch.batches == 1 and batch.routed == 4
    assert dict(got) == {texts[0]: "weather", texts[1]: "finance", texts[2]: "weather",
                         texts[3]: "finance"}
    # an intent arriving after the drain schedules a new job
    batch.add(None, fab, ("s", "rain again?", None, False, {},  # type: ignore[arg-type]
                          lambda d, e: got.append(("late", d.targets[0].skill))))
    assert len(fab.jobs) == 1
    fab.work()
    assert r.calls == [4, 1] and got[-1] == ("late", "weather")


def test_one_bad_item_does_not_fail_the_batch() -> None:
    r = CountingRouter()
    r.register("wx", "weather", "weather forecast rain temperature",
               ["will it rain tomorrow", "temperature in paris"])
    fab = FakeFabric(r)
    batch = _IntentBatch()
    got: list[Any] = []
    for t in ("will it rain", "   "):  # the second is invalid (the kernel checks first; belt and braces)
        batch.add(None, fab, ("s", t, None, False, {},  # type: ignore[arg-type]
                              lambda d, e: got.append(e if d is None else d.targets[0].skill)))
    fab.work()
    assert got[0] == "weather" and isinstance(got[1], Exception)
