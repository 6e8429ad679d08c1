"""Bearer tokens at the kernel's boundary: export a held capability, import a token.

Design
------
Inside the kernel authority is a slot; a token is how it leaves (to another
node, an external tool, a person) and comes back.

**Export** (``TOKEN_EXPORT``).  The caller names a slot holding GRANT and the
rights to put in the token (at most the slot's).  The kernel derives a copy of
that capability into its *own* space (holder 0) with those rights, and
numbers it: the export id.  The token's block 0, signed by the node's
ML-DSA-65 key, grants those rights on the object ``<node id>/cap/<export
id>``, with the caller's expiry, audience and rate.  Because the kernel's copy
is a child of the caller's capability in the derivation tree, revoking the
caller's capability (or any ancestor) invalidates the export, and every
later import of any token for it fails, without touching the token.

**Import** (``TOKEN_IMPORT``).  The token is verified once, here: every
signature and chain link, the revocation list (every block's revocation id),
expiry, and the audience, which must be this node (its key name
``aios-node-<id>``) if any block names one.  The object must be one of this
kernel's live exports.  The caller then gets a capability derived from the
export with the token's effective rights; from then on the slot is checked in
O(1) like any other.  An expiry becomes a kernel timer that revokes the
installed capability when it passes (cancelled if the holder exits first).  A
rate caveat becomes the ``ipc_rate`` quota when the object is an authority;
on other objects it is recorded in the audit but not enforced (the kernel has
no per-capability rate on endpoints).

**Revocation** (``TOKEN_REVOKE``, or ``aios token revoke`` on the durable
list, read at boot).  The id goes into the durable list and the in-memory set
that ``verify`` consults; capabilities already installed from a token carrying
that id are revoked at once.

Exports live in kernel memory: after a restart old tokens name exports that no
longer exist and fail to import (``NoSuchObject``).  Tokens are verified
against the current node key; a token minted before a key rotation must be
re-issued.  Signing and verifying run on the kernel thread (about 0.1 ms per
block; these are boundary operations, not the hot path).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument, InvalidCapability, NoSuchObject, PermissionDenied
from aios.abi.rights import ObjKind, Rights, rights_from_names, rights_names
from aios.kernel.capabilities import Capability
from aios.kernel.quotas import Quota
from aios.kmod.security.node import NodeSecurity
from aios.lib import tokens
from aios.lib.revocations import RevocationList

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel

MAX_EXPIRY_S = 10 * 365 * 24 * 3600


class TokenBridge:
    def __init__(self, k: Kernel, sec: NodeSecurity, revocations: RevocationList | None) -> None:
        self.k = k
        self.sec = sec
        self.revocations = revocations
        self.revoked: set[str] = set(revocations.ids()) if revocations is not None else set()
        self.exports: dict[int, Capability] = {}
        self.installed: dict[str, list[Capability]] = {}
        self.timers: dict[int, list[list[Any]]] = {}
        self._next_export = 1
        self.prefix = f"{sec.keystore.node_id}/cap/"

    @property
    def audience(self) -> str:
        return self.sec.node.name

    def export(self, a: Agent, slot: Any, rights: Any = None, opts: Any = None) -> bytes:
        from aios.kernel.args import as_opts

        cap = a.cspace.get(slot)
        if not cap.rights & Rights.GRANT:
            raise PermissionDenied(f"slot {cap.slot} lacks GRANT")
        o = as_opts(opts or {}, frozenset({"expiry", "expires_in", "audience", "rate"}))
        r = cap.rights if rights is None else rights_from_names(rights) & cap.rights
        names = [n for n in rights_names(r) if n in tokens.RIGHTS]
        if not names:
            raise InvalidArgument("a token must carry at least one right the slot holds")
        expiry = self._expiry(o)
        audience = o.get("audience")
        if audience is not None and (not isinstance(audience, str) or not 0 < len(audience) <= 256):
            raise InvalidArgument("audience must be a non-empty str of at most 256 chars")
        rate = o.get("rate")
        if rate is not None and (type(rate) is not int or rate < 1):
            raise InvalidArgument("rate must be a positive int (uses per second)")
        kcap = self.k.cdt.derive(cap, self.k.kspace, rights_from_names(names))
        eid = self._next_export
        self._next_export += 1
        self.exports[eid] = kcap
        obj = f"{self.prefix}{eid}"
        tok = tokens.mint(self.sec.node._key, object=obj, rights=names, issuer=self.sec.node.name,
                          expiry=expiry, audience=audience, rate=rate)
        views, _ = tokens.inspect(tok)
        self.k.publish("token.exported", a.aid, agent=a.aid, object=obj, slot=cap.slot,
                       kind=cap.obj.kind.name, rights=names, expiry=expiry, audience=audience,
                       rate=rate, revocation_id=views[0].revocation_id)
        return tok

    @staticmethod
    def _expiry(o: dict[str, Any]) -> int | None:
        if "expiry" in o and "expires_in" in o:
            raise InvalidArgument("give expiry or expires_in, not both")
        if "expires_in" in o:
            v = o["expires_in"]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= MAX_EXPIRY_S:
                raise InvalidArgument("expires_in must be a number of seconds")
            return math.ceil(time.time() + v)  # at least v seconds: never truncate below it
        v = o.get("expiry")
        if v is not None and (type(v) is not int or v <= 0):
            raise InvalidArgument("expiry must be unix seconds (int)")
        return v

    def import_(self, a: Agent, token: Any) -> int:
        if isinstance(token, str):
            token = tokens.from_text(token)
        if not isinstance(token, bytes):
            raise InvalidArgument("token must be bytes or its text form")
        try:
            grant = tokens.verify(token, self.sec.node.public_key, now=time.time(),
                                  audience=self.audience, is_revoked=self.revoked.__contains__)
        except Exception as e:
            self.k.publish("token.rejected", a.aid, agent=a.aid,
                           result=getattr(e, "name", type(e).__name__), reason=str(e)[:200])
            raise
        if not grant.object.startswith(self.prefix) or not grant.object[len(self.prefix):].isdigit():
            raise NoSuchObject(f"token names {grant.object!r}, not an export of this node")
        kcap = self.exports.get(int(grant.object[len(self.prefix):]))
        if kcap is None:
            raise NoSuchObject(f"no export {grant.object!r} on this kernel (restarted?)")
        if not kcap.valid:
            raise InvalidCapability(f"the capability exported as {grant.object!r} was revoked")
        r = rights_from_names(sorted(grant.rights)) & kcap.rights
        quota = None
        if grant.rate is not None and kcap.obj.kind is ObjKind.AUTHORITY:
            quota = Quota(ipc_rate=grant.rate)
        cap = self.k.cdt.derive(kcap, a.cspace, Rights(r), quota=quota)
        for rid in grant.revocation_ids:
            self.installed.setdefault(rid, []).append(cap)
        if grant.expiry is not None:
            delay_ns = max(0, int((grant.expiry - time.time()) * 1e9))
            t = self.k.call_at(self.k.now() + delay_ns, self._expire, cap, grant.object)
            self.timers.setdefault(a.aid, []).append(t)
        self.k.publish("token.imported", a.aid, agent=a.aid, object=grant.object, slot=cap.slot,
                       rights=sorted(grant.rights), expiry=grant.expiry, rate=grant.rate,
                       blocks=len(grant.revocation_ids), result="ok")
        return cap.slot

    def _expire(self, cap: Capability, obj: str) -> None:
        if cap.valid:
            holder = cap.holder
            self.k.cdt.revoke(cap)
            self.k.cdt.delete(cap)
            self.k.publish("token.expired", holder, agent=holder, object=obj, slot=cap.slot)

    def revoke(self, a: Agent, rid: Any, reason: Any = "") -> int:
        if not isinstance(rid, str):
            raise InvalidArgument("revocation id must be a str of 32 hex digits")
        rid = rid.strip().lower()
        if not isinstance(reason, str) or len(reason) > 256:
            raise InvalidArgument("reason must be a str of at most 256 chars")
        if self.revocations is not None:
            self.revocations.revoke(rid, reason)
        elif len(rid) != 32 or any(c not in "0123456789abcdef" for c in rid):
            raise InvalidArgument(f"not a revocation id: {rid!r} (32 hex digits)")
        self.revoked.add(rid)
        n = 0
        for cap in self.installed.pop(rid, []):
            if cap.valid:
                self.k.cdt.revoke(cap)
                self.k.cdt.delete(cap)
                n += 1
        self.k.publish("token.revoked", a.aid, agent=a.aid, revocation_id=rid, reason=reason,
                       capabilities=n)
        return n

    def forget(self, aid: int) -> None:
        for t in self.timers.pop(aid, []):
            self.k.cancel_timer(t)

    def close(self) -> None:
        if self.revocations is not None:
            self.revocations.close()
