"""The scheduler's core: the entity, class dispatch and priority inheritance.

The scheduler is pure: it never sleeps, never reads a clock except the one it
is given, and never touches the agent behind an entity.  The kernel calls it at
four moments: an agent becomes runnable (:meth:`Scheduler.wake`), the CPU needs
a next agent (:meth:`Scheduler.pick`), the running agent trapped after running
``delta`` ns (:meth:`Scheduler.charge`, which says whether it must now be
preempted), and the running agent goes back to the queue or to sleep
(:meth:`Scheduler.put_prev`, :meth:`Scheduler.block`).

Split as Linux splits ``kernel/sched/``: this module is ``core.c``, the facade
that owns entity states and sends each entity to its class; the fair class
(EEVDF, :mod:`aios.kernel.sched.fair`) keeps the virtual time and the augmented
tree (:mod:`aios.kernel.sched.tree`); the deadline class (EDF/CBS,
:mod:`aios.kernel.sched.deadline`) keeps its heaps and the admitted bandwidth.
Any queued deadline entity beats every fair one, so :meth:`Scheduler.pick`
asks the deadline class first.

An entity has a *policy* (the class it asked for) and an *effective class*
(the one it runs in now, which a boost may change).  Moving an entity between
classes (:meth:`Scheduler._reclass`) takes it out of its queue under the old
parameters, applies the change, and puts it back under the new ones; the fair
class's lag survives the trip because it is stored on leaving and used for
placement on entering.

Priority inheritance (used by :mod:`aios.kernel.sync`).  A priority is a pair
``(class, value)`` compared as a tuple, lower is stronger: ``(0, absolute
deadline)`` for the deadline class, ``(1, -weight)`` for the fair class.  A
boosted fair entity with a deadline donor runs in the deadline class at the
donor's deadline, unthrottled (Linux boosts the same way and does not throttle
boosted tasks); with a heavier fair donor it runs at the donor's weight, lag
preserved by Linux's reweight rule (Linux itself does not boost fair weights;
we do, so a heavy agent waiting on a light one's lock is not slowed to the
light one's share).

Preemption in-process happens only at traps: ``charge`` returns True and the
kernel switches at that trap.  A coroutine that never traps cannot be
preempted; untrusted code belongs in the isolated or Wasm executors.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from fractions import Fraction
from typing import Final

from aios.abi.errors import IllegalTransition, InvalidArgument
from aios.abi.limits import SLICE_NS
from aios.kernel.clock import Clock
from aios.kernel.sched import deadline as dl
from aios.kernel.sched.deadline import DeadlineQueue
from aios.kernel.sched.fair import (
    HINTS,
    NICE_0_LOAD,
    WEIGHT_MAX,
    WEIGHT_MIN,
    FairQueue,
    clamp_slice,
    nice_of_weight,
    set_slice,
    weight_of_nice,
)

Prio = tuple[int, int]
"""``(0, absolute_deadline_ns)`` or ``(1, -weight)``; smaller is stronger."""


class SchedClass(StrEnum):
    FAIR = "fair"
    DEADLINE = "deadline"


class RunState(StrEnum):
    SLEEPING = "sleeping"
    RUNNABLE = "runnable"  # queued (or throttled while wanting to run)
    RUNNING = "running"  # picked: "current", out of the queue
    GONE = "gone"


_SLEEPING: Final = RunState.SLEEPING
_RUNNABLE: Final = RunState.RUNNABLE
_RUNNING: Final = RunState.RUNNING
_GONE: Final = RunState.GONE
_FAIR: Final = SchedClass.FAIR
_DEADLINE: Final = SchedClass.DEADLINE


def _check_int(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgument(f"{name} must be an int", **{name: v})
    return v


class SchedEntity:
    """Scheduling state of one agent.  Fields prefixed ``_`` belong to queues."""

    __slots__ = (
        "_dkey", "_dl_token", "_eclass", "_enq_ts", "_ew", "_h", "_l", "_minv", "_p",
        "_pi", "_r", "_thr_token", "_throttled", "_vrem", "_vslice", "batch", "deadline",
        "dl_abs", "dl_deadline", "dl_left", "dl_period", "dl_runtime", "key", "owner",
        "picks", "policy", "runtime_ns", "slice_left", "slice_ns", "state", "throttles",
        "vlag", "vruntime", "wait_ns", "waits", "weight",
    )  # fmt: skip

    def __init__(self, key: int, owner: object, weight: int) -> None:
        self.key = key
        self.owner = owner
        self.state = _SLEEPING
        self.policy = _FAIR
        self.weight = weight
        self.slice_ns = SLICE_NS
        self.batch = False
        # fair
        self.vruntime = 0
        self.deadline = 0
        self.vlag = 0
        self.slice_left = SLICE_NS
        self._vrem = 0
        self._ew = weight
        self._vslice = SLICE_NS * NICE_0_LOAD // weight
        # deadline
        self.dl_runtime = 0
        self.dl_deadline = 0
        self.dl_period = 0
        self.dl_left = 0
        self.dl_abs = 0
        self._throttled = False
        self._dl_token = 0
        self._thr_token = 0
        self._dkey = 0
        # inheritance
        self._pi: Prio | None = None
        self._eclass = _FAIR
        # tree links
        self._l: SchedEntity | None = None
        self._r: SchedEntity | None = None
        self._p: SchedEntity | None = None
        self._h = 0
        self._minv = 0
        # stats
        self.runtime_ns = 0
        self.wait_ns = 0
        self.waits = 0
        self.picks = 0
        self.throttles = 0
        self._enq_ts = 0

    def __repr__(self) -> str:
        return f"<SchedEntity {self.key} {self._eclass.value} {self.state.value}>"


class Scheduler:
    """The run queue: EEVDF for fair entities, EDF/CBS for deadline ones."""

    def __init__(self, clock: Clock, ncpus: int = 1, *, base_slice_ns: int = SLICE_NS) -> None:
        if _check_int("ncpus", ncpus) < 1:
            raise InvalidArgument("ncpus must be >= 1")
        self._clock = clock
        self.ncpus = ncpus
        self.base_slice_ns = clamp_slice(_check_int("base_slice_ns", base_slice_ns))
        self._fair = FairQueue()
        self._dl = DeadlineQueue()
        self._check_preempt = False

    # -- entities -------------------------------------------------------------

    def new_entity(self, key: int, owner: object, *, weight: int = NICE_0_LOAD) -> SchedEntity:
        _check_int("key", key)
        if not isinstance(weight, int) or not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            raise InvalidArgument(f"weight must be in [{WEIGHT_MIN}, {WEIGHT_MAX}]")
        ent = SchedEntity(key, owner, weight)
        set_slice(ent, self.base_slice_ns)
        return ent

    def __len__(self) -> int:
        """Runnable entities waiting in a queue (not running, not throttled)."""
        return self._fair.tree.n + self._dl.nr

    # -- the fair class's view ---------------------------------------------------------

    def vavg(self) -> int | None:
        """The fair queue's virtual time V (None if no fair entity is counted)."""
        return self._fair.vavg()

    def lag_ns(self, ent: SchedEntity) -> int:
        """Service owed to ``ent`` in real ns (stored lag while it sleeps)."""
        counted = ent._eclass is _FAIR and ent.state in (_RUNNABLE, _RUNNING)
        return self._fair.lag_ns(ent, counted)

    def eligible(self, ent: SchedEntity) -> bool:
        return self._fair.eligible(ent)

    # -- the deadline class's timer --------------------------------------------------

    def _replenish(self, now: int) -> None:
        for e in self._dl.replenish_due(now):
            self._recompute(e)
            if e.state is _RUNNABLE:
                self._dl.push(e)
                self._check_preempt = True

    def next_event_ns(self) -> int | None:
        """When a throttled deadline entity is next replenished (None: nothing pending)."""
        return self._dl.next_event_ns()

    # -- effective class ------------------------------------------------------------

    def _recompute(self, ent: SchedEntity, counted: bool = True) -> None:
        """Derive effective class, deadline key and weight from policy and boost.

        ``counted``: a fair entity that is runnable or running is in V (and the
        tree), so a weight change must go through the lag-keeping reweight."""
        pi = ent._pi
        if ent.policy is _DEADLINE:
            ent._eclass = _DEADLINE
            ent._dkey = ent.dl_abs if pi is None or pi[0] != 0 else min(ent.dl_abs, pi[1])
        elif pi is not None and pi[0] == 0:
            ent._eclass = _DEADLINE
            ent._dkey = pi[1]
        else:
            ent._eclass = _FAIR
        ew = ent.weight
        if pi is not None and pi[0] == 1 and -pi[1] > ew:
            ew = -pi[1]
        if counted and ew != ent._ew and ent._eclass is _FAIR and ent.state in (_RUNNABLE, _RUNNING):
            in_tree = ent.state is _RUNNABLE
            fair = self._fair
            if in_tree:
                fair.tree.remove(ent)
            fair.reweight(ent, ew)
            if in_tree:
                fair.tree.insert(ent)
        else:
            ent._ew = ew
            ent._vslice = ent.slice_ns * NICE_0_LOAD // ew

    def _dequeue(self, ent: SchedEntity) -> None:
        """Take a runnable or running ``ent`` out of its class's accounting."""
        st = ent.state
        if ent._eclass is _FAIR:
            if st is _RUNNABLE:
                self._fair.tree.remove(ent)
            self._fair.leave(ent)
        elif st is _RUNNABLE and not ent._throttled:
            self._dl.drop(ent)

    def _reclass(self, ent: SchedEntity, mutate: Callable[[], None]) -> None:
        """Apply ``mutate`` to ``ent``'s parameters, moving it between queues as needed."""
        st = ent.state
        active = st is _RUNNABLE or st is _RUNNING
        if active:
            self._dequeue(ent)
        mutate()
        now = self._clock.now_ns()
        if ent._throttled and (ent.policy is not _DEADLINE or ent._pi is not None):
            dl.unthrottle(ent, now)
        self._recompute(ent, counted=False)
        if not active:
            return
        if ent._eclass is _FAIR:
            self._fair.enter(ent)
            if st is _RUNNABLE:
                self._fair.tree.insert(ent)
        elif st is _RUNNABLE and not ent._throttled:
            self._dl.push(ent)
        self._check_preempt = True

    # -- the kernel's interface ------------------------------------------------

    def wake(self, ent: SchedEntity) -> None:
        """Make ``ent`` runnable (new or woken).  Waking a runnable entity is a no-op."""
        st = ent.state
        if st is not _SLEEPING:
            if st is _GONE:
                raise IllegalTransition("entity was removed", key=ent.key)
            return
        now = self._clock.now_ns()
        self._replenish(now)
        ent.state = _RUNNABLE
        ent._enq_ts = now
        if ent._eclass is _FAIR:
            self._fair.enter(ent)
            self._fair.tree.insert(ent)
            if not ent.batch:
                self._check_preempt = True
        else:
            if not ent._throttled:
                if ent.policy is _DEADLINE:
                    dl.wake_rule(ent, now)
                self._recompute(ent)
                self._dl.push(ent)
            self._check_preempt = True

    def block(self, ent: SchedEntity) -> None:
        """``ent`` sleeps: it leaves the queue; a fair one keeps its clamped lag."""
        st = ent.state
        if st is _SLEEPING:
            return
        if st is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        self._dequeue(ent)
        ent.state = _SLEEPING

    def remove(self, ent: SchedEntity) -> None:
        """The agent is gone: forget the entity and release its bandwidth."""
        if ent.state is _GONE:
            return
        self.block(ent)
        if ent.policy is _DEADLINE:
            self._dl.release(ent)
        ent._thr_token += 1
        ent._throttled = False
        ent.state = _GONE

    def pick(self) -> SchedEntity | None:
        """Choose the next entity to run; it becomes current and leaves the queue."""
        now = self._clock.now_ns()
        self._replenish(now)
        ent = self._dl.pop()
        if ent is None:
            ent = self._fair.pick()
            if ent is None:
                return None
        ent.state = _RUNNING
        ent.picks += 1
        ent.waits += 1
        ent.wait_ns += now - ent._enq_ts
        self._check_preempt = False
        return ent

    def charge(self, ent: SchedEntity, delta_ns: int) -> bool:
        """Account ``delta_ns`` of CPU to the current ``ent``; True = preempt it now."""
        if ent.state is not _RUNNING:
            raise IllegalTransition("charge of an entity that is not running", key=ent.key)
        if delta_ns < 0:
            raise InvalidArgument("negative runtime", delta_ns=delta_ns)
        ent.runtime_ns += delta_ns
        dlq = self._dl
        if dlq.thr_heap and dlq.thr_heap[0][0] <= self._clock.now_ns():
            self._replenish(self._clock.now_ns())
        if ent._eclass is _DEADLINE:
            if ent.policy is _DEADLINE:
                ent.dl_left -= delta_ns
                if ent.dl_left <= 0:
                    if ent._pi is None:
                        dlq.throttle(ent)
                        return True
                    dl.refill(ent, self._clock.now_ns())  # boosted: never throttled
                    self._recompute(ent)
            top = dlq.top()
            return top is not None and top._dkey < ent._dkey
        fair = self._fair
        fair.update_curr(ent, delta_ns)
        if dlq.nr:
            return True  # real-time beats fair
        if fair.slice_used(ent, delta_ns):
            return True
        if self._check_preempt:
            self._check_preempt = False
            return fair.wakeup_preempts(ent)
        return False

    def put_prev(self, ent: SchedEntity) -> None:
        """The current entity goes back to the queue (preempted or yielded)."""
        if ent.state is not _RUNNING:
            raise IllegalTransition("put_prev of an entity that is not running", key=ent.key)
        ent.state = _RUNNABLE
        ent._enq_ts = self._clock.now_ns()
        if ent._eclass is _FAIR:
            self._fair.tree.insert(ent)
        elif not ent._throttled:
            self._dl.push(ent)

    def yield_(self, ent: SchedEntity) -> None:
        """Give up the rest of the slice (fair: deadline moves one slice on; deadline
        class: the remaining runtime is dropped and the task waits for its next period)."""
        if ent.state is not _RUNNING:
            raise IllegalTransition("yield of an entity that is not running", key=ent.key)
        if ent._eclass is _FAIR:
            FairQueue.yield_(ent)
        elif ent.policy is _DEADLINE and ent._pi is None and not ent._throttled:
            ent.dl_left = 0
            self._dl.throttle(ent)

    # -- parameters -----------------------------------------------------------------

    def set_fair(
        self,
        ent: SchedEntity,
        *,
        weight: int | None = None,
        nice: int | None = None,
        slice_ns: int | None = None,
        hint: str | None = None,
    ) -> None:
        """Set fair-class parameters (they apply while the entity is in the fair class)."""
        if ent.state is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        if weight is not None and nice is not None:
            raise InvalidArgument("give weight or nice, not both")
        new_w = ent.weight
        if nice is not None:
            new_w = weight_of_nice(nice)
        elif weight is not None:
            if not isinstance(weight, int) or isinstance(weight, bool) or not (
                WEIGHT_MIN <= weight <= WEIGHT_MAX
            ):
                raise InvalidArgument(f"weight must be an int in [{WEIGHT_MIN}, {WEIGHT_MAX}]")
            new_w = weight
        new_slice = ent.slice_ns
        new_batch = ent.batch
        if hint is not None:
            if hint not in HINTS:
                raise InvalidArgument(f"unknown hint {hint!r}; have {sorted(HINTS)}")
            new_slice, new_batch = HINTS[hint]
            if hint == "default":
                new_slice = self.base_slice_ns
        if slice_ns is not None:
            s = _check_int("slice_ns", slice_ns)
            if s < 0:
                raise InvalidArgument("slice_ns must be >= 0 (0 = default)")
            new_slice = clamp_slice(s) if s else self.base_slice_ns
        ent.batch = new_batch
        set_slice(ent, new_slice)
        if new_w != ent.weight:
            ent.weight = new_w
            self._recompute(ent)

    def set_deadline(
        self, ent: SchedEntity, *, runtime_ns: int, deadline_ns: int, period_ns: int
    ) -> None:
        """Move ``ent`` to the deadline class (or change its parameters), with admission."""
        if ent.state is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        r = _check_int("runtime_ns", runtime_ns)
        d = _check_int("deadline_ns", deadline_ns)
        p = _check_int("period_ns", period_ns)
        dl.check_params(r, d, p)
        old = Fraction(ent.dl_runtime, ent.dl_period) if ent.policy is _DEADLINE else Fraction(0)
        self._dl.admit(old, r, p, self.ncpus)

        def mutate() -> None:
            ent.policy = _DEADLINE
            ent.dl_runtime, ent.dl_deadline, ent.dl_period = r, d, p
            ent.dl_abs = self._clock.now_ns() + d
            ent.dl_left = r
            ent._throttled = False
            ent._thr_token += 1

        self._reclass(ent, mutate)

    def set_fair_class(self, ent: SchedEntity) -> None:
        """Back from the deadline class to the fair class (releases bandwidth)."""
        if ent.state is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        if ent.policy is not _DEADLINE:
            return
        self._dl.release(ent)

        def mutate() -> None:
            ent.policy = _FAIR
            ent._throttled = False
            ent._thr_token += 1

        self._reclass(ent, mutate)

    def dl_bandwidth(self) -> Fraction:
        """Admitted deadline bandwidth, sum(runtime / period)."""
        return self._dl.bw

    # -- priority inheritance -------------------------------------------------------

    def base_prio(self, ent: SchedEntity) -> Prio:
        """``ent``'s own priority, ignoring any boost."""
        if ent.policy is _DEADLINE:
            return (0, ent.dl_abs)
        return (1, -ent.weight)

    def effective_prio(self, ent: SchedEntity) -> Prio:
        """The priority ``ent`` runs at now (boost included)."""
        if ent._eclass is _DEADLINE:
            return (0, ent._dkey)
        return (1, -ent._ew)

    def set_pi(self, ent: SchedEntity, donor: Prio | None) -> None:
        """Run ``ent`` at ``donor``'s priority if that is stronger than its own; None deboosts."""
        if ent.state is _GONE:
            return
        if donor is not None and donor >= self.base_prio(ent):
            donor = None
        if donor == ent._pi:
            return

        if ent._eclass is _FAIR and (donor is None or donor[0] == 1):
            ent._pi = donor  # fair -> fair: an in-place reweight keeps the lag
            self._recompute(ent)
            return

        def mutate() -> None:
            ent._pi = donor

        self._reclass(ent, mutate)

    # -- statistics -----------------------------------------------------------------

    def stats(self, ent: SchedEntity) -> dict[str, int | float | str]:
        out: dict[str, int | float | str] = {
            "key": ent.key,
            "class": ent.policy.value,
            "effective_class": ent._eclass.value,
            "state": ent.state.value,
            "weight": ent.weight,
            "effective_weight": ent._ew,
            "slice_ns": ent.slice_ns,
            "batch": int(ent.batch),
            "vruntime": ent.vruntime,
            "vdeadline": ent.deadline,
            "lag_ns": self.lag_ns(ent),
            "runtime_ns": ent.runtime_ns,
            "waits": ent.waits,
            "wait_ns": ent.wait_ns,
            "picks": ent.picks,
            "throttles": ent.throttles,
            "throttled": int(ent._throttled),
            "boosted": int(ent._pi is not None),
        }
        nice = nice_of_weight(ent.weight)
        if nice is not None:
            out["nice"] = nice
        if ent.policy is _DEADLINE:
            out.update(
                dl_runtime_ns=ent.dl_runtime,
                dl_deadline_ns=ent.dl_deadline,
                dl_period_ns=ent.dl_period,
                dl_left_ns=ent.dl_left,
                dl_abs_ns=ent.dl_abs,
            )
        return out
