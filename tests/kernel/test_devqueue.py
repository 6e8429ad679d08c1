"""DeviceQueue, called directly: the rules one at a time."""

from __future__ import annotations

import pytest

from aios.abi.errors import Busy, InvalidArgument, NoSuchObject, QuotaExceeded, WouldBlock
from aios.kernel.clock import VirtualClock
from aios.kernel.devqueue import DeviceQueue, Pricing, Priority, ServiceModel

MS = 1_000_000
SEC = 1_000_000_000
SM = ServiceModel(prefill_tokens_per_s=10_000, decode_tokens_per_s=50,
                  device_tokens_per_s=500, deadline_share=0.5)


def test_least_counter_first_and_prices() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1, pricing=Pricing(1, 2))
    a = dq.submit(1, 100, 10)
    (r,) = dq.dispatch().start
    assert r.rid == a and dq.counter(1) == 100  # the prompt is charged at dispatch
    dq.submit(1, 10, 10)
    b = dq.submit(2, 10, 10)
    dq.complete(a, output_tokens=10)
    assert dq.counter(1) == 120  # 10 generated tokens at 2 units
    assert dq.dispatch().start[0].rid == b  # client 2 has been served less


def test_weight_scales_the_counter() -> None:
    dq = DeviceQueue(VirtualClock(), slots=4)
    dq.set_weight(1, 2048)
    for k in (1, 2):
        dq.submit(k, 100, 0 + 1)
    for r in dq.dispatch().start:
        dq.complete(r.rid, output_tokens=1)
    assert dq.counter(2) == 2 * dq.counter(1)


def test_counter_lifted_on_return_from_idle() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1)
    for _ in range(3):
        dq.submit(1, 100, 1)
    for _ in range(3):
        (r,) = dq.dispatch().start
        dq.complete(r.rid, output_tokens=1)
    assert dq.counter(1) == 306
    dq.submit(1, 100, 1)  # client 1 is still waiting with one request
    dq.submit(2, 100, 1)  # client 2 arrives from idle: lifted to 306, no credit banked
    assert dq.counter(2) == 306


def test_budget_refused_before_sending_and_nothing_changes() -> None:
    dq = DeviceQueue(VirtualClock(), slots=2)
    dq.set_budget(1, tokens=1000)
    dq.submit(1, 300, 300)
    before = dq.stats(1)
    with pytest.raises(QuotaExceeded) as e:
        dq.submit(1, 200, 300)  # 600 + 500 > 1000
    assert "token budget" in str(e.value) and "400 of 1000 remain" in str(e.value)
    after = dq.stats(1)
    assert {k: v for k, v in after.items() if k != "refused"} == {
        k: v for k, v in before.items() if k != "refused"} and after["refused"] == 1
    assert dq.queued(1) == 1


def test_budget_reservation_released_at_completion() -> None:
    dq = DeviceQueue(VirtualClock(), slots=2, pricing=Pricing(1, 2))
    dq.set_budget(1, tokens=1000, cost=2000)
    rid = dq.submit(1, 300, 300)  # reserves 600 tokens, 900 units
    dq.dispatch()
    dq.complete(rid, output_tokens=50)  # used 350 tokens, 400 units
    s = dq.stats(1)
    assert (s["tokens_used"], s["tokens_reserved"], s["cost_used"], s["cost_reserved"]) == (
        350, 0, 400, 0)
    dq.submit(1, 300, 350)  # 650 <= 650 left
    with pytest.raises(QuotaExceeded, match="cost budget"):
        dq.set_budget(2, cost=10) or dq.submit(2, 5, 5)  # 5 + 10 units > 10


def test_cancelled_request_stops_being_charged() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1)
    dq.set_budget(1, tokens=10_000)
    rid = dq.submit(1, 100, 1000)
    dq.dispatch()
    dq.progress(rid, 10)
    assert dq.cancel(rid)
    assert dq.progress(rid, 500) == 0 and dq.complete(rid, 900) is None
    s = dq.stats(1)
    assert s["tokens_out"] == 10 and s["tokens_reserved"] == 0 and dq.in_flight == 0


def test_progress_reports_are_idempotent() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1)
    rid = dq.submit(1, 10, 100)
    dq.dispatch()
    assert dq.progress(rid, 5) == 5
    assert dq.progress(rid, 5) == 0 and dq.progress(rid, 3) == 0
    assert dq.progress(rid, 8) == 3
    assert dq.progress(rid, 10_000) == 92  # capped at max_tokens
    assert dq.stats(1)["tokens_out"] == 100


def test_suspend_and_resume_charge_nothing_twice() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1)
    rid = dq.submit(1, 100, 50)
    dq.dispatch()
    dq.progress(rid, 20)
    r = dq.suspend(rid, 20, "partial answer")
    assert r.resume is not None and r.resume.output_tokens == 20 and r.remaining_tokens == 30
    assert dq.queued(1) == 1 and dq.in_flight == 0
    (again,) = dq.dispatch().start
    assert again.rid == rid and again.resume is not None
    dq.complete(rid, output_tokens=50)
    s = dq.stats(1)
    assert (s["tokens_in"], s["tokens_out"], s["preempted"]) == (100, 50, 1)
    assert dq.recomputed_tokens == 120  # prompt + snapshot re-read: the device's cost


def test_deadline_admission_and_edf() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=1, service=SM)
    with pytest.raises(Busy, match="cannot be met"):
        dq.submit(1, 100, 100, deadline_ns=1 * SEC)  # needs 2.01 s alone
    late = dq.submit(1, 100, 50, deadline_ns=9 * SEC)
    early = dq.submit(2, 100, 50, deadline_ns=3 * SEC)
    fair = dq.submit(3, 10, 10)
    assert [r.rid for r in dq.dispatch(limit=1).start] == [early]
    # each such request is 0.11 s of device work: by 3 s, half the device (1.5 s)
    # holds the one in flight and 12 more, not 13
    admitted = []
    with pytest.raises(Busy, match="admission"):
        for _ in range(20):
            admitted.append(dq.submit(4, 100, 50, deadline_ns=3 * SEC))
    assert len(admitted) == 12
    order = []
    for _ in range(14):
        dq.complete(dq.in_flight_ids()[0], output_tokens=50)
        order.append(dq.dispatch().start[0].rid)
    assert order == [*admitted, late, fair]  # earliest deadline first, fair ones after


def test_deadline_preempts_the_weakest_fair_request_when_urgent() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=2, service=SM, preempt_margin_ns=100 * MS)
    a = dq.submit(1, 10, 500, priority=Priority.BATCH)
    b = dq.submit(2, 10, 500)
    assert len(dq.dispatch().start) == 2
    d = dq.submit(3, 10, 20, deadline_ns=1 * SEC)
    assert dq.dispatch().preempt == ()  # not urgent yet: a slot may free in time
    urgent = dq.next_event_ns()
    assert urgent is not None and urgent == 1 * SEC - SM.latency_ns(10, 20) - 100 * MS
    clock.jump_to(urgent)
    dec = dq.dispatch()
    assert dec.preempt == (a,) and dec.start == ()  # the BATCH one goes
    dq.progress(a, 40)
    dq.suspend(a, 40, "forty tokens")
    assert [r.rid for r in dq.dispatch().start] == [d]
    del b


def test_program_with_less_service_goes_first() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1, program_quantum=100)
    first = dq.submit(1, 50, 50, program=7)
    dq.dispatch()
    dq.complete(first, output_tokens=50)  # program 7 has attained 150 units
    long_next = dq.submit(1, 50, 50, program=7)
    short = dq.submit(1, 50, 50, program=8)
    assert [r.rid for r in dq.dispatch().start] == [short]
    del long_next


def test_class_lent_to_the_agent_waited_on() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1, lag_window=10_000)
    dq.set_class(1, Priority.INTERACTIVE)
    dq.set_class(2, Priority.BATCH)
    dq.set_class(4, Priority.BATCH)
    x = dq.submit(3, 10, 10)  # NORMAL
    y = dq.submit(2, 10, 10)  # BATCH
    dq.lend(1, 4)
    dq.lend(4, 2)  # 1 waits on 4, which waits on 2: 2 runs at INTERACTIVE
    assert dq.effective_class(2) is Priority.INTERACTIVE
    assert [r.rid for r in dq.dispatch().start] == [y]
    dq.unlend(4, 2)
    assert dq.effective_class(2) is Priority.BATCH
    del x


def test_backpressure_would_block() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1, max_queued=2)
    dq.submit(1, 1, 1)
    dq.submit(1, 1, 1)
    assert not dq.has_room(1)
    with pytest.raises(WouldBlock):
        dq.submit(1, 1, 1)
    assert dq.queued(1) == 2 and dq.has_room(2)
    dq.dispatch()
    assert dq.has_room(1)


def test_does_not_fit_is_passed_over() -> None:
    dq = DeviceQueue(VirtualClock(), slots=2)
    big = dq.submit(1, 5000, 10)
    small = dq.submit(2, 10, 10)
    got = dq.dispatch(lambda r: r.prompt_tokens < 1000).start
    assert [r.rid for r in got] == [small]
    assert dq.queued() == 1
    del big


def test_bad_arguments() -> None:
    clock = VirtualClock()
    with pytest.raises(InvalidArgument):
        DeviceQueue(clock, slots=0)
    dq = DeviceQueue(clock, slots=1)
    for bad in ((1, -1, 1), (1, 0, 0), (1, 1.5, 1)):
        with pytest.raises(InvalidArgument):
            dq.submit(*bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="no service model"):
        dq.submit(1, 1, 1, deadline_ns=SEC)
    with pytest.raises(InvalidArgument, match="priority"):
        dq.submit(1, 1, 1, priority=7)
    assert dq.queued() == 0
    with pytest.raises(InvalidArgument):
        dq.set_weight(1, 0)
    with pytest.raises(InvalidArgument):
        dq.set_budget(1, tokens=-1)
    with pytest.raises(InvalidArgument):
        dq.lend(1, 1)
    with pytest.raises(NoSuchObject):
        dq.complete(12345)
    with pytest.raises(NoSuchObject):
        dq.stats(77)
    rid = dq.submit(1, 2, 2)
    assert dq.cancel(rid) and not dq.cancel(rid)
    assert dq.dispatch().start == ()
    assert dq.remove_client(1) == []


def test_suspended_at_max_tokens_is_complete_not_requeued() -> None:
    dq = DeviceQueue(VirtualClock(), slots=1)
    rid = dq.submit(1, 10, 5)
    dq.dispatch()
    r = dq.suspend(rid, 5, "all five")
    assert r.remaining_tokens == 0 and dq.queued(1) == 0 and dq.stats(1)["completed"] == 1
    assert dq.stats(1)["tokens_reserved"] == 0
