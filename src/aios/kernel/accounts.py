"""Kernel buffers charged to the agents that caused them.

Design
------
Memory an agent allocates (regions, pools) has always been charged to its
authority capability.  Memory the *kernel* keeps on an agent's behalf was
not: messages queued in other agents' mailboxes, events waiting in its
subscriptions' queues, pending async results, memory-fabric and semantic
requests in flight.  The review grew a kernel by 314 MB with an agent whose
quota was 16 MiB, by hoarding event-queue entries.  Every such buffer is now
charged, as ``Resource.MEMORY``, to an :class:`Account`:

* a queued **message** to its *sender* (from the moment it enters a mailbox
  until a receiver takes it or the mailbox is destroyed): a flooder runs out
  of its own quota, not the receiver's;
* a queued **event** to the *subscriber* (it chose the pattern, the depth and
  not to read);
* a pending **async result** and a **fabric request** in flight to the agent
  that started it.

An account is one :class:`~aios.kernel.quotas.Charge` on the agent's
own authority capability (slot 2), grown and shrunk as buffers come and go,
so the usual rules apply: the charge counts against that capability and
every ancestor, a revoked authority refunds it, a deleted one hands it to its
parent.  Walking the authority chain for every queued message would double
the cost of IPC, so an account *reserves* quota ahead in steps of
:data:`RESERVE` bytes and counts its buffers against the reservation; the
charge on the chain is the reservation (at most ``RESERVE`` above what is
buffered, and exactly what is needed near the quota's limit), and it is
given back entirely when the buffers are gone.  A charge that does not fit raises
:class:`~aios.abi.errors.QuotaExceeded` (EDQUOT) and changes nothing; for events,
which never block their publisher, it is the subscriber's overflow policy
that gives way (the oldest queued event is dropped, or the new one).

An account outlives its agent while anything it paid for is still queued (a
dead sender's messages may sit in a mailbox): it is closed at termination and
forgotten once its balance returns to zero, so the ledger stays as large as
the set of agents with buffers outstanding.  Costs are estimates, fixed per
kind plus payload bytes (:mod:`aios.abi.limits`): what matters is that
every buffer costs something and the sum is bounded by the quota.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from aios.abi.errors import QuotaExceeded
from aios.kernel.capabilities import Capability, CapabilityDerivationTree
from aios.kernel.quotas import Charge, Resource

RESERVE: Final = 16 * 1024  # quota an account reserves ahead of its buffers


class Account:
    """The kernel buffers of one agent: a growing and shrinking MEMORY charge."""

    __slots__ = ("aid", "chg", "closed", "used")

    def __init__(self, aid: int, chg: Charge | None) -> None:
        self.aid = aid
        self.chg = chg  # the reservation; None: no authority to charge (everything is refused)
        self.closed = False
        self.used = 0  # bytes of buffers it pays for now (<= the reservation)

    @property
    def balance(self) -> int:
        return self.used


class Ledger:
    """Accounts by agent id; ``authority_of(aid)`` finds the capability to charge."""

    def __init__(self, cdt: CapabilityDerivationTree,
                 authority_of: Callable[[int], Capability | None]) -> None:
        self.cdt = cdt
        self.authority_of = authority_of
        self.accounts: dict[int, Account] = {}

    def account(self, aid: int) -> Account:
        acct = self.accounts.get(aid)
        if acct is None:
            auth = self.authority_of(aid)
            chg = None
            if auth is not None and auth.valid and auth.used is not None:
                chg = self.cdt.charge(auth, Resource.MEMORY, 0)
            acct = self.accounts[aid] = Account(aid, chg)
            if chg is not None:
                chg.what = acct
        return acct

    def take(self, aid: int, n: int, force: bool = False) -> None:
        """Charge ``n`` bytes of kernel buffers to agent ``aid``; QuotaExceeded if they
        do not fit (``force``: a buffer the kernel cannot refuse; it counts anyway)."""
        if aid <= 0:
            return  # the kernel's own
        acct = self.accounts.get(aid) or self.account(aid)
        used = acct.used + n
        chg = acct.chg
        if chg is not None and used <= chg.amount:  # within the reservation: no chain walk
            acct.used = used
            return
        if chg is None or chg.cap is None:
            if not force:
                raise QuotaExceeded(f"agent {aid} holds no authority to charge kernel buffers to",
                                    resource="MEMORY")
            acct.used = used
            return
        need = used - chg.amount
        try:
            self.cdt.grow(chg, need + RESERVE)
        except QuotaExceeded:  # near the limit: exactly what is needed, or refuse
            self.cdt.grow(chg, need, force)
        acct.used = used

    def check(self, aid: int, n: int) -> None:
        """Raise QuotaExceeded now if ``n`` more bytes would not fit (charges nothing)."""
        self.take(aid, n)
        self.give(aid, n)

    def try_take(self, aid: int, n: int) -> bool:
        try:
            self.take(aid, n)
        except QuotaExceeded:
            return False
        return True

    def give(self, aid: int, n: int) -> None:
        """The buffers are gone: refund ``n`` bytes."""
        acct = self.accounts.get(aid)
        if acct is None:
            return
        used = acct.used - n
        if used < 0:
            used = 0
        acct.used = used
        chg = acct.chg
        if chg is not None:
            spare = chg.amount - used
            if used == 0 or spare > 2 * RESERVE:  # keep at most one step ahead
                self.cdt.shrink(chg, spare if used == 0 else spare - RESERVE)
        if acct.closed and used == 0:
            self._drop(acct)

    def close(self, aid: int) -> None:
        """Agent ``aid`` ended; its account goes once nothing it paid for is queued."""
        acct = self.accounts.get(aid)
        if acct is None:
            return
        acct.closed = True
        if acct.used == 0:
            self._drop(acct)

    def _drop(self, acct: Account) -> None:
        if acct.chg is not None:
            self.cdt.uncharge(acct.chg)
            acct.chg.what = None
        self.accounts.pop(acct.aid, None)

    def balance(self, aid: int) -> int:
        acct = self.accounts.get(aid)
        return acct.balance if acct is not None else 0


class EventAccount:
    """What a subscription queue charges: the subscriber's account (for the bus)."""

    __slots__ = ("aid", "ledger")

    def __init__(self, ledger: Ledger, aid: int) -> None:
        self.ledger = ledger
        self.aid = aid

    def take(self, n: int) -> bool:
        return self.ledger.try_take(self.aid, n)

    def give(self, n: int) -> None:
        self.ledger.give(self.aid, n)


def payload_bytes(args: Any) -> int:
    """A cheap size estimate of request arguments (strings and bytes, one level deep)."""
    n = 0
    for x in args if isinstance(args, (list, tuple)) else (args,):
        if isinstance(x, (str, bytes, bytearray)):
            n += len(x)
        elif isinstance(x, (list, tuple)):
            n += sum(len(y) for y in x if isinstance(y, (str, bytes, bytearray)))
        elif isinstance(x, dict):
            n += sum(len(y) for y in x.values() if isinstance(y, (str, bytes, bytearray)))
    return n
