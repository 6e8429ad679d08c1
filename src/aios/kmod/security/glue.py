"""The security boot step: what a kernel with a home (or with policy on) runs.

Design
------
``boot()`` calls :func:`install` as one step of its ordered list.  With
neither ``BootConfig.home`` nor ``BootConfig.policy`` set it does nothing, so
tests, benchmarks and ``aios run`` stay as light as before.  Otherwise, in
order:

1. the Cedar engine: the package defaults plus ``$HOME/policy/*.cedar`` when
   there is a home, the defaults alone for ``policy=True`` without one (a
   broken policy set stops the boot, with its errors);
2. with a home: :func:`~aios.kmod.security.node.open_node_security` (keystore and
   node key, measured boot of kernel code, boot configuration and the policy
   set's digest into PCRs 0-2, the audit log), the audit pump subscribed to
   the bus and its commit thread started, per-agent identities as a spawn
   post-hook, and the token bridge with the durable revocation list;
3. the policy gate's hooks and guards;
4. the behavior monitor as ``kernel.observer`` (``BootConfig.behavior``:
   ``True`` for the default configuration, a ``BehaviorConfig``, or
   ``False``);
5. an agent-exit hook (the registry's ``on_agent_exit``) that drops per-agent state;
6. a shutdown hook (``on_shutdown``, last of all) that flushes the audit log, signs a
   final checkpoint and closes the databases after the agents are gone.

Everything lives in one :class:`KernelSecurity` per kernel, found with
:func:`security_of` (``k.ext[SECURITY]``, the registry's typed extension state).
The syscalls in :mod:`aios.kmod.security.syscalls` (block 150-169) reach it that way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.kernel.registry import Key
from aios.kmod.security.audit import AgentIdentities, AuditPump, measure_boot_steps
from aios.kmod.security.node import NodeSecurity
from aios.kmod.security.policy import SPAWN_OPS, BehaviorResponder, PolicyGate
from aios.kmod.security.tokens import TokenBridge
from aios.lib.policy.engine import ReloadResult

if TYPE_CHECKING:
    from aios.boot import BootConfig
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel


class KernelSecurity:
    """The security parts of one running kernel (any may be absent)."""

    def __init__(self, k: Kernel, home: Path | None) -> None:
        self.k = k
        self.home = home
        self.node: NodeSecurity | None = None
        self.audit: AuditPump | None = None
        self.identities: AgentIdentities | None = None
        self.policy: PolicyGate | None = None
        self.behavior: BehaviorResponder | None = None
        self.tokens: TokenBridge | None = None
        self.closed = False

    def need_node(self) -> NodeSecurity:
        if self.node is None:
            raise NoSuchObject("this kernel has no node security (boot it with a home)")
        return self.node

    def on_exit(self, a: Agent) -> None:
        aid = a.aid
        for part in (self.identities, self.policy, self.behavior, self.tokens):
            if part is not None:
                part.forget(aid)

    def on_reload(self, res: ReloadResult) -> None:
        if res.changed and self.node is not None and self.policy is not None:
            from aios.lib import attest
            from aios.lib.paths import event_log_path

            digest = self.policy.engine.compiled.digest
            self.node.pcrs.measure(attest.PCR_POLICY, digest.encode(), f"policy set {digest[:16]} (reload)")
            self.node.pcrs.save_log(event_log_path(self.node.home))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.tokens is not None:
            self.tokens.close()
        if self.audit is not None:
            self.audit.close()
        elif self.node is not None:
            self.node.close()


SECURITY: Key[KernelSecurity] = Key("security")


def security_of(k: Kernel) -> KernelSecurity | None:
    return k.ext.get(SECURITY)


def require(k: Kernel) -> KernelSecurity:
    ks = k.ext.get(SECURITY)
    if ks is None:
        raise NoSuchObject("security is not enabled on this kernel (boot with home= or policy=True)")
    return ks


def _config_bytes(cfg: BootConfig) -> bytes:
    """What of the boot configuration is measured into PCR 1."""
    return json.dumps(
        {
            "arena_bytes": cfg.arena_bytes,
            "clock": type(cfg.clock).__name__,
            "scheduler": getattr(cfg.scheduler, "__qualname__", None),
            "policy": bool(cfg.policy),
            "behavior": repr(cfg.behavior),
            "agent_identity": cfg.agent_identity,
            "audit_flush_ms": cfg.audit_flush_ms,
            "extra_steps": [getattr(s, "__qualname__", repr(s)) for s in cfg.extra_steps],
        },
        sort_keys=True,
    ).encode()


def install(k: Kernel, cfg: BootConfig) -> None:
    """The security kernel module: its syscall block (150-169) always (without a
    home or ``policy`` every call there is NoSuchObject), the rest only with one."""
    from aios.kmod.security.syscalls import HANDLERS
    from aios.lib.behavior import BehaviorConfig, BehaviorMonitor
    from aios.lib.policy.engine import PolicyEngine
    from aios.lib.policy.files import DEFAULTS_DIR, policy_dirs, read_sources

    k.registry.syscalls.block("security").add_all(HANDLERS)
    home = Path(cfg.home) if cfg.home is not None else None
    if home is None and not cfg.policy:
        return
    ks = KernelSecurity(k, home)

    def emit(topic: str, record: Any) -> None:
        k.publish(topic, 0, **dict(record))

    dirs = policy_dirs(home) if home is not None else [DEFAULTS_DIR]
    engine = PolicyEngine(lambda: read_sources(dirs), emit=emit)

    if home is not None:
        from aios.kmod.security.node import open_node_security
        from aios.lib.home import check_home
        from aios.lib.revocations import RevocationList

        if not home.exists():
            home.mkdir(parents=True, mode=0o711)
        fixed = check_home(home)  # refuses a home others can write; tightens private files
        node = open_node_security(
            home, cfg.passphrase,
            boot_steps=measure_boot_steps(_config_bytes(cfg), engine.compiled.digest),
            accept_broken_log=cfg.accept_broken_log,
        )
        ks.node = node
        ks.audit = AuditPump(k, node, cfg.audit_flush_ms)
        ks.audit.attach()
        if fixed:
            k.publish("security.home_fixed", 0, paths=fixed[:64], count=len(fixed))
        ks.audit.start()
        ks.identities = AgentIdentities(k, node, cfg.agent_identity)
        if cfg.agent_identity != "off":
            for op in SPAWN_OPS:
                k.hooks.add_post(op, ks.identities.on_spawn)
        ks.tokens = TokenBridge(k, node, RevocationList.at_home(home))

    ks.policy = PolicyGate(k, engine, dirs if home is not None else None, ks.on_reload)
    ks.policy.attach()
    c = engine.compiled
    k.publish("policy.loaded", 0, files=list(c.files), policies=len(c.infos),
              digest=c.digest, generation=engine.generation)

    if cfg.behavior:
        bcfg = cfg.behavior if isinstance(cfg.behavior, BehaviorConfig) else None
        if cfg.behavior is not True and bcfg is None:
            raise InvalidArgument("BootConfig.behavior must be a bool or a BehaviorConfig")
        ks.behavior = BehaviorResponder(k, BehaviorMonitor(bcfg))
        k.observer = ks.behavior.observer()
        ks.behavior.attach_sandbox()  # network refusals by the sandboxes, from the real kernel path

    k.registry.on_agent_exit(ks.on_exit)
    k.ext[SECURITY] = ks
    # after the agents were killed: the audit is flushed and closed last of all
    k.registry.on_shutdown(ks.close, order=1000)


def reload_policy(k: Kernel) -> dict[str, Any]:
    """Reload the running kernel's policies now (the daemon's ``aios policy reload``)."""
    ks = require(k)
    if ks.policy is None:
        raise NoSuchObject("this kernel has no policy engine")
    r = ks.policy.reload()
    return {
        "ok": r.ok,
        "changed": r.changed,
        "generation": r.generation,
        "files": list(r.files),
        "policies": r.policies,
        "errors": list(r.errors),
        "added": list(r.added),
        "removed": list(r.removed),
        "modified": list(r.modified),
    }
