"""Token budgets on device capabilities, charged up the derivation chain.

A budget is a limit on the tokens (prompt and generated) that work done
through a capability may take.  It is set by deriving a capability
(``LLM_BUDGET``): the holder of a model's capability makes a child of it with
"at most N tokens" and gives the child to an agent, which may derive again
with a smaller budget for its own children.  Every request is charged to the
capability it was made through *and to every ancestor that carries a budget*,
as memory is charged up an authority chain (:mod:`aios.kernel.quotas`), so no
subtree spends more than its root allows, however many grandchildren it makes.

Charging is reserve, then settle.  Before a request is sent, its worst case
(estimated prompt plus ``max_tokens``) is *reserved* at every level, all or
nothing: if any level cannot cover it the request is refused with
``QuotaExceeded`` and nothing changes.  When the request ends (finished,
cancelled, killed, failed) the reservation is released and what it really
took is *charged*, never more than was reserved: a budget is never overrun.

This module is pure bookkeeping: the chain is any object with a ``parent``
attribute (a kernel capability), looked up by identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aios.abi.errors import InvalidArgument, QuotaExceeded

MAX_BUDGET = 1 << 48


@dataclass(slots=True, eq=False)
class Budget:
    limit: int
    used: int = 0
    reserved: int = 0

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used - self.reserved)

    def view(self) -> dict[str, int]:
        return {"limit": self.limit, "used": self.used, "reserved": self.reserved,
                "left": self.left}


class Budgets:
    """Budgets by capability (identity), and the arithmetic of charging a chain."""

    def __init__(self) -> None:
        self._by: dict[Any, Budget] = {}

    def __len__(self) -> int:
        return len(self._by)

    def set(self, cap: Any, tokens: int) -> Budget:
        if not isinstance(tokens, int) or isinstance(tokens, bool) or not 0 <= tokens <= MAX_BUDGET:
            raise InvalidArgument(f"a token budget must be an int in [0, {MAX_BUDGET}]")
        b = self._by[cap] = Budget(tokens)
        return b

    def get(self, cap: Any) -> Budget | None:
        return self._by.get(cap)

    def chain(self, cap: Any) -> list[Budget]:
        """The budgets on ``cap`` and its ancestors, nearest first."""
        out = []
        c = cap
        while c is not None:
            b = self._by.get(c)
            if b is not None:
                out.append(b)
            c = getattr(c, "parent", None)
        return out

    @staticmethod
    def reserve(chain: list[Budget], tokens: int) -> None:
        """Reserve ``tokens`` at every level, or raise ``QuotaExceeded`` and change nothing."""
        for depth, b in enumerate(chain):
            if tokens > b.left:
                raise QuotaExceeded(
                    f"LLM token budget: this request may take {tokens} tokens (prompt + "
                    f"max_tokens) but only {b.left} of {b.limit} remain"
                    + ("" if depth == 0 else f" in a budget {depth} level(s) up the chain"),
                    need=tokens, left=b.left, limit=b.limit, level=depth, resource="LLM_TOKENS",
                )
        for b in chain:
            b.reserved += tokens

    @staticmethod
    def settle(chain: list[Budget], reserved: int, used: int) -> int:
        """Release a reservation and charge what was used (at most the reservation);
        returns the tokens charged."""
        charged = max(0, min(used, reserved))
        for b in chain:
            b.reserved -= reserved
            b.used += charged
        return charged

    def forget(self, dead: Any) -> None:
        """Drop the budgets of capabilities ``dead(cap)`` says are gone (their charges
        stay counted in every ancestor)."""
        for cap in [c for c in self._by if dead(c)]:
            del self._by[cap]
