"""Boot: the composition root, one ordered list of steps (xv6 ``main.c``).

This is the only module that knows every kernel module.  The kernel below it
is mechanism (tables, the dispatcher, the registry); the kernel modules
(``aios.kmod.*`` and the services) register themselves with it when their
``install(kernel, config)`` runs.  :data:`STEPS` follows the whitepaper's boot
sequence (section 4.1) step by step:

1. **Secure boot** (firmware verifies the bootloader): not applicable to a
   user-space kernel on Linux; the host's own secure boot, if any, covers
   the interpreter.  Nothing to run here.
2. **Bootloader** (measures and loads the kernel): the kernel code is
   measured into PCR 0 when the security module opens the node
   (``aios.lib.attest.measure_kernel_code``), before any agent runs.
3. **Kernel entry** (core initialisation): :func:`_core` builds the clock,
   the arena and the tables; the kernel registers its own syscall blocks.
4. **Measurements** (configuration and policies into PCRs 1-2) and the
   **security** services (keys, audit, policy gate, behavior, tokens): the
   ``security`` step, a no-op without a home and without ``policy``.
5. **Init**: agent 1, made by the kernel at construction (it adopts orphans).
6. **Service startup**: executors, signed images, memoryd, semantic-ipcd,
   the device bus and the language-model devices on it.
7. **Agent supervisor registers**: the ``supervision`` step.
   Then the **kernel journal** (with a home and ``journal``): replay, restore what a crash
   must not take, journal every change; and **initd** (``initd``): the units, booted to
   ``operational.target`` (steps 5-8 as targets, the services supervised).
8. **Operational**: ``kernel.booted`` is published (and audited).

Each step is ``step(kernel, config)``; ``BootConfig.extra_steps`` run after
these (tests and embedders add their own).  The measurements are made as
before this list existed: PCR 0 kernel code, PCR 1 configuration (including
the names of extra steps), PCR 2 policies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.abi import limits
from aios.kernel.clock import Clock, MonotonicClock
from aios.kernel.kernel import Kernel


@dataclass
class BootConfig:
    clock: Clock = field(default_factory=MonotonicClock)
    arena_bytes: int = limits.ARENA_BYTES
    scheduler: Any = None  # a scheduler factory taking the clock; None: the default
    loader: Callable[[str], Any] | None = None
    extra_steps: list[Callable[[Kernel, BootConfig], None]] = field(default_factory=list)
    # -- security (aios.kmod.security.glue); all off unless home or policy is set --
    home: Path | None = None  # $AIOS_HOME: keys, measured boot, audit log, policies, tokens
    passphrase: bytes | None = None  # keystore passphrase (None: a key file under home/keys)
    policy: bool = False  # Cedar engine even without a home (package defaults only)
    behavior: Any = True  # behavior monitor as kernel.observer: True, False or a BehaviorConfig
    agent_identity: str = "lazy"  # per-agent ML-DSA identity: "lazy", "eager" or "off"
    audit_flush_ms: float = 5.0  # group-commit interval of the audit log
    accept_broken_log: bool = False  # boot on a damaged audit log: move it aside, audit that
    # -- memory fabric (memoryd, semantic-ipcd); loaded lazily on first use --
    embedder: str | None = None  # an embedder spec (None: $AIOS_EMBEDDER, else the default)
    # -- observability (aios.kmod.observe); off unless asked for --
    metrics: str | None = None  # serve Prometheus metrics on HOST:PORT (loopback unless allowed)
    metrics_allow_remote: bool = False  # let ``metrics`` name a non-loopback address
    metrics_top: int = 10  # per-agent series for this many agents
    trace: float | None = None  # trace IPC calls and semantic routes, sampling this ratio of requests
    trace_provider: Any = None  # an OpenTelemetry TracerProvider (None: the global one)
    # -- devices: "auto" plugs the embedded model as llm0 when llama.cpp is installed --
    llm: str = "auto"  # "auto" or "off"
    # -- the kernel journal (needs a home): replay and restore at boot, journal every change --
    journal: bool = False
    journal_keep_checkpoints: int = 3  # per agent; older ones are pruned as new ones commit
    # -- initd (PID 1's unit manager): shipped units plus home/units, booted to operational.target --
    initd: bool = False


Step = Callable[[Kernel, BootConfig], None]


def _core(cfg: BootConfig) -> Kernel:
    """Step 3: clock, arena, tables, init (agent 1), the kernel's own syscall blocks."""
    sched = cfg.scheduler(cfg.clock) if cfg.scheduler is not None else None
    k = Kernel(clock=cfg.clock, arena_bytes=cfg.arena_bytes, scheduler=sched, loader=cfg.loader)
    k.home = cfg.home
    return k


def _security(k: Kernel, cfg: BootConfig) -> None:
    """Steps 2 and 4: measured boot (kernel code, configuration, policies), keys, audit,
    policy gate, behavior responder, tokens; its syscalls (PQC 12, 150-169) always."""
    from aios.kmod.security.glue import install

    install(k, cfg)


def _executors(k: Kernel, cfg: BootConfig) -> None:
    """Step 6: the isolated, worker and Wasm executors (started on first use)."""
    from aios.kmod.executors import install

    install(k, cfg)


def _images(k: Kernel, cfg: BootConfig) -> None:
    """Step 6: the verified store of signed agent images (``AGENT_SPAWN`` of ``image:``)."""
    from aios.kmod.images.store import install

    install(k, cfg)


def _memoryd(k: Kernel, cfg: BootConfig) -> None:
    """Step 6: memoryd (100-119); its worker and store start on the first syscall."""
    from aios.kmod.memoryd.service import install

    install(k, cfg.embedder)


def _semantic_ipcd(k: Kernel, cfg: BootConfig) -> None:
    """Step 6: semantic-ipcd (120-139), on memoryd's worker."""
    from aios.kmod.semantic_ipcd.service import install

    install(k, cfg)


def _supervision(k: Kernel, cfg: BootConfig) -> None:
    """Step 7: the agent supervisor registers (restart policies, fault domains)."""
    from aios.kmod.supervision.service import install

    install(k, cfg)


def _devices(k: Kernel, cfg: BootConfig) -> None:
    """Step 6: the device bus (175-179): classes, drivers, hotplug, health."""
    from aios.kmod.devices.table import install

    install(k, cfg)


def _journal(k: Kernel, cfg: BootConfig) -> None:
    """After a crash, the kernel's state comes back (agents, capabilities, durable mailboxes):
    the journal replays, restores and from here on records every change (171-174)."""
    from aios.kmod.journal.syscalls import install

    install(k, cfg)


def _llm(k: Kernel, cfg: BootConfig) -> None:
    """Step 6: language models as devices (180-189); the embedded one as llm0."""
    from aios.kmod.llm.service import install

    install(k, cfg)


def _observe(k: Kernel, cfg: BootConfig) -> None:
    """Step 7: metrics and traces, when asked for (nothing is installed otherwise)."""
    from aios.kmod.observe.service import install

    install(k, cfg)


def _initd(k: Kernel, cfg: BootConfig) -> None:
    """Steps 5-8 as initd's targets: units loaded and checked, services started and supervised
    with systemd's semantics, up to ``operational.target`` (200-209)."""
    from aios.kmod.initd.service import install

    install(k, cfg)


def _announce(k: Kernel, cfg: BootConfig) -> None:
    """Step 8: operational."""
    k.publish("kernel.booted", 0, syscalls=k.registry.syscalls.count())


STEPS: list[Step] = [
    _security,
    _executors,
    _images,
    _memoryd,
    _semantic_ipcd,
    _supervision,
    _devices,
    _llm,
    _observe,
    _journal,
    _initd,
    _announce,
]


def boot(cfg: BootConfig | None = None) -> Kernel:
    """The core (step 3), then every step in order, then ``cfg.extra_steps``."""
    cfg = cfg or BootConfig()
    k = _core(cfg)
    for step in STEPS + cfg.extra_steps:
        step(k, cfg)
    return k
