"""Syscall shims for the security layer: policy, tokens, behavior, identity, attestation, audit.

Each shim checks its capability slot and hands over to the parts that
:func:`aios.kmod.security.glue.install` put on this kernel.  On a kernel
booted without a home and without ``policy`` they all fail with
``NoSuchObject`` ("security is not enabled"); the parts that need the node
key (tokens, identities, quotes, audit) also need a home.

Operator actions need authority: reloading policy and revoking tokens take
ADMIN on an authority capability; releasing an agent from automated
responses takes SUPERVISOR on its control capability (the right that resumes
it, too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.abi.rights import ObjKind, Rights
from aios.abi.sysno import Sys
from aios.kernel.agents import Agent, agent_of
from aios.kernel.args import as_dict, as_str
from aios.lib.crypto.pqc import OPERATIONS, pqc_operation

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel
    from aios.kmod.security.glue import KernelSecurity


def _sec(k: Kernel) -> KernelSecurity:
    from aios.kmod.security.glue import require

    return require(k)


def _target(a: Agent, slot: Any, need: Rights) -> Agent:
    cap = a.cspace.lookup(slot, ObjKind.AGENT, need)
    return agent_of(cap.obj.payload)


def sys_policy_reload(k: Kernel, a: Agent, auth_slot: Any) -> dict[str, Any]:
    """Reload the policy files now; an invalid set is refused and the old one stays."""
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ADMIN)
    from aios.kmod.security.glue import reload_policy

    res = reload_policy(k)
    if not res["ok"]:
        raise InvalidArgument("policy reload rejected: " + "; ".join(res["errors"])[:2000],
                              errors=res["errors"])
    return res


def sys_token_export(k: Kernel, a: Agent, slot: Any, rights: Any = None, opts: Any = None) -> bytes:
    """A bearer token signed by the node key for (a narrowing of) a held capability."""
    ks = _sec(k)
    if ks.tokens is None:
        a.cspace.get(slot)
        raise NoSuchObject("tokens need node security (boot with a home)")
    return ks.tokens.export(a, slot, rights, opts)


def sys_token_import(k: Kernel, a: Agent, token: Any) -> int:
    """Verify a token once and install its capability in the caller's space; returns the slot."""
    ks = _sec(k)
    if ks.tokens is None:
        raise NoSuchObject("tokens need node security (boot with a home)")
    if isinstance(token, (bytes, str)) and len(token) > 1 << 20:
        raise InvalidArgument("token too large")
    return ks.tokens.import_(a, token)


def sys_token_revoke(k: Kernel, a: Agent, auth_slot: Any, rid: Any, reason: Any = "") -> int:
    """Revoke a token block (and every token derived from it); returns installed slots revoked."""
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ADMIN)
    ks = _sec(k)
    if ks.tokens is None:
        raise NoSuchObject("tokens need node security (boot with a home)")
    return ks.tokens.revoke(a, rid, reason)


def sys_agent_release(k: Kernel, a: Agent, slot: Any) -> list[dict[str, Any]]:
    """Reverse every automated response in force on an agent (unthrottle, resume, regrant)."""
    t = _target(a, slot, Rights.SUPERVISOR)
    ks = _sec(k)
    if ks.behavior is None:
        raise NoSuchObject("this kernel has no behavior monitor")
    return ks.behavior.release(t.aid)


def sys_behavior_status(k: Kernel, a: Agent, slot: Any = 0) -> dict[str, Any]:
    """An agent's anomaly score, its components and the responses in force."""
    t = _target(a, slot, Rights.READ)
    ks = _sec(k)
    if ks.behavior is None:
        raise NoSuchObject("this kernel has no behavior monitor")
    return ks.behavior.status(t.aid)


def sys_agent_identity(k: Kernel, a: Agent, slot: Any = 0) -> dict[str, Any]:
    """An agent's ML-DSA-65 public key and the node-signed binding to its id and image."""
    t = _target(a, slot, Rights.READ)
    ks = _sec(k)
    if ks.identities is None or ks.identities.mode == "off":
        raise NoSuchObject("this kernel issues no agent identities")
    return ks.identities.describe(t.aid)


def sys_attest_quote(k: Kernel, a: Agent, nonce: Any) -> dict[str, Any]:
    """The kernel's PCR values and the caller's nonce, signed by the node key."""
    if not isinstance(nonce, bytes):
        raise InvalidArgument("nonce must be bytes")
    node = _sec(k).need_node()
    q = node.quote(nonce)
    out: dict[str, Any] = q.to_json()
    out["event_log"] = [e.to_json() for e in node.pcrs.log]
    return out


def sys_audit_status(k: Kernel, a: Agent) -> dict[str, Any]:
    """Size, acknowledged (durable) size and pending entries of the audit log."""
    ks = _sec(k)
    if ks.audit is None:
        raise NoSuchObject("this kernel has no audit log (boot with a home)")
    return ks.audit.status()


def sys_pqc_operation(k: Kernel, a: Agent, op: Any, args: Any = None) -> int:
    """Start an ML-KEM / ML-DSA operation off the kernel thread; returns an async handle."""
    name = as_str(op, "op", 64)
    if name not in OPERATIONS:
        raise InvalidArgument(f"unknown PQC operation {name!r}; have {sorted(OPERATIONS)}")
    args = as_dict(args or {}, "args")
    for key, v in args.items():
        if type(key) is not str or not isinstance(v, (bytes, str)) or len(v) > 1 << 20:
            raise InvalidArgument("PQC arguments are str keys to bytes or str values (<= 1 MiB)")
    return k.run_in_thread(a, pqc_operation, name, dict(args))


HANDLERS: dict[Sys, Callable[..., Any]] = {
    Sys.PQC_OPERATION: sys_pqc_operation,
    Sys.POLICY_RELOAD: sys_policy_reload,
    Sys.TOKEN_EXPORT: sys_token_export,
    Sys.TOKEN_IMPORT: sys_token_import,
    Sys.TOKEN_REVOKE: sys_token_revoke,
    Sys.AGENT_RELEASE: sys_agent_release,
    Sys.BEHAVIOR_STATUS: sys_behavior_status,
    Sys.AGENT_IDENTITY: sys_agent_identity,
    Sys.ATTEST_QUOTE: sys_attest_quote,
    Sys.AUDIT_STATUS: sys_audit_status,
}
