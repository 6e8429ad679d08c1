"""The memory fabric from an agent: :class:`Memory` and :class:`Namespace`.

A namespace is a capability (a slot); everything here is a wrapper over the
MEMD_* syscalls plus CAP_MINT / CAP_GRANT / CAP_REVOKE for sharing::

    mem = Memory()
    ns = await mem.create("team/findings", quota_items=1000)
    await ns.put("Berlin: rain tomorrow", meta={"by": "weather"})
    hits = await ns.search("forecast for Germany", k=3)
    share = await ns.share(peer_ep, ["READ"])   # the peer gets a read-only slot
    await share.revoke()                        # its next call fails

A peer adopts a granted slot with ``Memory().adopt(msg.cap)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aios.abi.slots import SLOT_AUTHORITY
from aios.sdk import syscalls as sc


@dataclass(frozen=True, slots=True)
class Share:
    """One grant of a namespace: ``revoke()`` ends exactly this share."""

    slot: int  # the sharer's intermediate capability; the grantee's is its child
    peer_slot: int  # the slot in the grantee's space

    async def revoke(self) -> int:
        n: int = await sc.cap_revoke(self.slot)
        await sc.cap_delete(self.slot)
        return n


class Namespace:
    """A memory namespace held through capability ``slot``."""

    __slots__ = ("name", "slot")

    def __init__(self, slot: int, name: str | None = None) -> None:
        self.slot = slot
        self.name = name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, slot={self.slot})"

    # archival and recall records
    async def put(self, text: str, *, tier: str = "archival", meta: dict[str, Any] | None = None,
                  ttl_s: float | None = None, role: str | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {"tier": tier}
        if meta is not None:
            opts["meta"] = meta
        if ttl_s is not None:
            opts["ttl_s"] = ttl_s
        if role is not None:
            opts["role"] = role
        r: dict[str, Any] = await sc.memd_put(self.slot, text, opts)
        return r

    async def get(self, record_id: int) -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_get(self.slot, record_id)
        return r

    async def delete(self, record_id: int) -> None:
        await sc.memd_delete(self.slot, record_id)

    async def search(self, query: str, k: int = 10, *, filters: dict[str, Any] | None = None,
                     tier: str = "archival") -> list[dict[str, Any]]:
        opts: dict[str, Any] = {"k": k, "tier": tier}
        if filters:
            opts["filters"] = filters
        r: list[dict[str, Any]] = await sc.memd_search([self.slot], query, opts)
        return r

    # core blocks
    async def core_set(self, label: str, value: str, *, limit: int | None = None) -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_core_set(self.slot, label, value,
                                                   {"limit": limit} if limit else None)
        return r

    async def core_append(self, label: str, text: str) -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_core_set(self.slot, label, text, {"mode": "append"})
        return r

    async def core_replace(self, label: str, old: str, new: str) -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_core_set(self.slot, label, new, {"mode": "replace", "old": old})
        return r

    async def core_get(self, label: str) -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_core_get(self.slot, label)
        return r

    async def core_blocks(self) -> list[dict[str, Any]]:
        r: list[dict[str, Any]] = await sc.memd_core_get(self.slot, None)
        return r

    async def core_history(self, label: str) -> list[dict[str, Any]]:
        r: list[dict[str, Any]] = await sc.memd_core_get(self.slot, label, {"history": True})
        return r

    # recall (message history)
    async def recall_append(self, role: str, text: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_recall(self.slot, "append", text, {"role": role, "meta": meta})
        return r

    async def recall_search(self, text: str | None = None, *, k: int = 20, since: float | None = None,
                            until: float | None = None, role: str | None = None) -> list[dict[str, Any]]:
        opts = {key: v for key, v in (("k", k), ("since", since), ("until", until), ("role", role))
                if v is not None}
        r: list[dict[str, Any]] = await sc.memd_recall(self.slot, "search", text, opts)
        return r

    async def stats(self) -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_stats(self.slot)
        if self.name is None:
            self.name = r["namespace"]
        return r

    # sharing
    async def share(self, ep: int, rights: Any = ("READ",), payload: bytes = b"") -> Share:
        """Grant ``rights`` (READ / WRITE / GRANT) to the owner of endpoint ``ep``."""
        names = [str(r).upper() for r in rights]
        mid: int = await sc.cap_mint(self.slot, sorted({*names, "GRANT"}))
        peer: int = await sc.cap_grant(mid, ep, names, payload)
        return Share(mid, peer)


class Memory:
    """Namespaces reached through an authority capability (default: the agent's own)."""

    __slots__ = ("authority",)

    def __init__(self, authority: int = SLOT_AUTHORITY) -> None:
        self.authority = authority

    async def create(self, name: str, *, quota_items: int | None = None, quota_bytes: int | None = None,
                     ttl_s: float | None = None, max_items: int | None = None) -> Namespace:
        opts = {k: v for k, v in (("quota_items", quota_items), ("quota_bytes", quota_bytes),
                                  ("ttl_s", ttl_s), ("max_items", max_items)) if v is not None}
        slot: int = await sc.memd_create(self.authority, name, opts or None)
        return Namespace(slot, name)

    async def open(self, name: str, rights: Any = None) -> Namespace:
        """An existing namespace (needs ADMIN on the authority)."""
        slot: int = await sc.memd_open(self.authority, name, list(rights) if rights else None)
        return Namespace(slot, name)

    @staticmethod
    def adopt(slot: int, name: str | None = None) -> Namespace:
        """A namespace capability received in a message (``msg.cap``)."""
        return Namespace(slot, name)

    @staticmethod
    async def search(namespaces: list[Namespace], query: str, k: int = 10, *,
                     filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One semantic search over several namespaces, merged by score."""
        opts: dict[str, Any] = {"k": k}
        if filters:
            opts["filters"] = filters
        r: list[dict[str, Any]] = await sc.memd_search([n.slot for n in namespaces], query, opts)
        return r

    async def list(self) -> list[dict[str, Any]]:
        r: list[dict[str, Any]] = await sc.memd_list(self.authority)
        return r

    @staticmethod
    async def stats() -> dict[str, Any]:
        r: dict[str, Any] = await sc.memd_stats(None)
        return r
