"""Boot: one ordered list of steps (xv6 ``main.c``).

``boot()`` builds a kernel by running :data:`STEPS` in order; each step is a
function of the kernel under construction and the configuration.  The list
is the place to read what starts, and in what order; later issues add
measured-boot records and services as further steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.kernel import params
from aios.kernel.clock import Clock, MonotonicClock
from aios.kernel.kernel import Kernel


@dataclass
class BootConfig:
    clock: Clock = field(default_factory=MonotonicClock)
    arena_bytes: int = params.ARENA_BYTES
    scheduler: Any = None  # a scheduler factory taking the clock; None: the default
    loader: Callable[[str], Any] | None = None
    extra_steps: list[Callable[[Kernel, BootConfig], None]] = field(default_factory=list)
    # -- security (aios.security.kernel_glue); all off unless home or policy is set --
    home: Path | None = None  # $AIOS_HOME: keys, measured boot, audit log, policies, tokens
    passphrase: bytes | None = None  # keystore passphrase (None: a key file under home/keys)
    policy: bool = False  # Cedar engine even without a home (package defaults only)
    behavior: Any = True  # behavior monitor as kernel.observer: True, False or a BehaviorConfig
    agent_identity: str = "lazy"  # per-agent ML-DSA identity: "lazy", "eager" or "off"
    audit_flush_ms: float = 5.0  # group-commit interval of the audit log
    accept_broken_log: bool = False  # boot on a damaged audit log: move it aside, audit that
    # -- memory fabric (memoryd, semantic-ipcd); loaded lazily on first use --
    embedder: str | None = None  # an embedder spec (None: $AIOS_EMBEDDER, else the default)


def _core(cfg: BootConfig) -> Kernel:
    sched = cfg.scheduler(cfg.clock) if cfg.scheduler is not None else None
    k = Kernel(clock=cfg.clock, arena_bytes=cfg.arena_bytes, scheduler=sched, loader=cfg.loader)
    k.home = cfg.home
    return k


def _announce(k: Kernel, cfg: BootConfig) -> None:
    k.publish("kernel.booted", 0, syscalls=sum(1 for h in k.table if h is not None))


def _security(k: Kernel, cfg: BootConfig) -> None:
    """Keys, measured boot, audit, policy, behavior, tokens (when home or policy is set)."""
    if cfg.home is None and not cfg.policy:
        return
    from aios.security.kernel_glue import install

    install(k, cfg)


def _memory_fabric(k: Kernel, cfg: BootConfig) -> None:
    """memoryd and semantic-ipcd: their worker and store start on the first syscall."""
    from aios.services.memoryd.service import install

    install(k, cfg.embedder)


STEPS: list[Callable[[Kernel, BootConfig], None]] = [
    _security,
    _memory_fabric,
    _announce,
]


def boot(cfg: BootConfig | None = None) -> Kernel:
    """Clock, arena and tables (the core), then every step in order."""
    cfg = cfg or BootConfig()
    k = _core(cfg)
    for step in STEPS + cfg.extra_steps:
        step(k, cfg)
    return k
