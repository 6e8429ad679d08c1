"""The observe kernel module: metrics (and traces) for one kernel, installed at boot.

``install(kernel, config)`` does nothing unless the configuration asks for
metrics (``BootConfig.metrics``, an ``ADDRESS:PORT``) or traces
(``BootConfig.trace``, a sample ratio).  Then it:

* puts its state under :data:`OBSERVE` in ``kernel.ext``;
* for metrics, has the dispatcher count syscalls (``registry.count_syscalls``),
  registers the IPC probe, subscribes to
  sandbox and capability-violation events, counts agents that end, and
  serves ``/metrics`` on the address with ``prometheus_client``'s HTTP
  server (its own daemon thread);
* stops the server at shutdown (``registry.on_shutdown``).

The address must be a loopback one unless ``metrics_allow_remote`` is set: a
metrics endpoint names agents and shows what they do, and it has no
authentication, so exposing it is the operator's explicit decision.  A
refused address is an ``InvalidArgument`` raised at boot, before anything
listens.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument
from aios.kernel.registry import Key
from aios.kmod.observe.tally import Tally

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel

log = logging.getLogger("aios.kmod.observe")

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"


@dataclass
class Observe:
    """One kernel's observability state."""

    tally: Tally | None = None
    tracer: Any = None  # aios.kmod.observe.tracing.IpcTracer when tracing is on
    registry: Any = None  # the prometheus CollectorRegistry
    server: Any = None  # the HTTP server serving /metrics
    address: tuple[str, int] | None = None  # where it listens (the port resolved)
    subs: list[int] = field(default_factory=list)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.tracer is not None:
            self.tracer.close()


OBSERVE: Key[Observe] = Key("observe")


def parse_address(spec: str, allow_remote: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) as ``(host, port)``; a host that is not loopback is
    refused unless ``allow_remote``."""
    if type(spec) is not str or ":" not in spec:
        raise InvalidArgument(f"metrics address must be HOST:PORT, got {spec!r}")
    host, _, port_s = spec.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_s)
    except ValueError:
        raise InvalidArgument(f"metrics port must be a number, got {port_s!r}") from None
    if not 0 <= port <= 65535 or not host:
        raise InvalidArgument(f"metrics address must be HOST:PORT with a port in 0..65535, got {spec!r}")
    if not allow_remote and not is_loopback(host):
        raise InvalidArgument(
            f"metrics address {host!r} is not a loopback address; the endpoint has no authentication, "
            "so pass --metrics-allow-remote to serve it beyond this machine")
    return host, port


def is_loopback(host: str) -> bool:
    """True if every address ``host`` names is a loopback one."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addrs)


class ObserveProbe:
    """The kernel's IPC probe: feeds the metrics tally and the tracer, whichever are on."""

    def __init__(self, tally: Tally | None, tracer: Any) -> None:
        self.tally = tally
        self.tracer = tracer

    def sent(self, a: Agent, n: int, nbytes: int) -> None:
        if self.tally is not None:
            self.tally.sent(a, n, nbytes)

    def call(self, a: Agent, cid: int, receiver: int, nbytes: int, parent: Any = None) -> None:
        if self.tally is not None:
            self.tally.call(a, cid, receiver, nbytes, parent)
        if self.tracer is not None:
            self.tracer.call(a, cid, receiver, nbytes, parent)

    def received(self, cid: int, receiver: Agent) -> None:
        if self.tracer is not None:
            self.tracer.received(cid, receiver)

    def replied(self, a: Agent, cid: int, nbytes: int) -> None:
        if self.tally is not None:
            self.tally.replied(a, cid, nbytes)
        if self.tracer is not None:
            self.tracer.replied(a, cid, nbytes)

    def ended(self, cid: int) -> None:
        if self.tally is not None:
            self.tally.ended(cid)
        if self.tracer is not None:
            self.tracer.ended(cid)

    def route(self, a: Agent, intent: str) -> tuple[int, Any]:
        """The route token both halves read: ``(start time, span or None)``."""
        t0 = self.tally.route(a, intent)[0] if self.tally is not None else 0
        span = self.tracer.route(a, intent)[1] if self.tracer is not None else None
        return t0, span

    def routed(self, token: tuple[int, Any], outcome: str, targets: int) -> None:
        if self.tally is not None:
            self.tally.routed(token, outcome, targets)
        if self.tracer is not None:
            self.tracer.routed(token, outcome, targets)


def install(k: Kernel, cfg: Any) -> Observe | None:
    """Metrics and/or traces, as ``cfg`` asks (``metrics``, ``metrics_allow_remote``,
    ``metrics_top``, ``trace``); None when it asks for neither."""
    metrics = getattr(cfg, "metrics", None)
    trace = getattr(cfg, "trace", None)
    if not metrics and trace is None:
        return None
    address = parse_address(metrics, bool(getattr(cfg, "metrics_allow_remote", False))) if metrics else None
    obs = Observe()
    if trace is not None:
        from aios.kmod.observe.tracing import IpcTracer

        obs.tracer = IpcTracer(k, trace, getattr(cfg, "trace_provider", None))
    if address is not None:
        _start_metrics(k, obs, address, int(getattr(cfg, "metrics_top", 0) or 10))
    # one half alone is the probe itself: no forwarding call on the IPC paths
    probe: Any = ObserveProbe(obs.tally, obs.tracer) if obs.tally and obs.tracer else obs.tally or obs.tracer
    k.registry.set_ipc_probe(probe)
    k.ext[OBSERVE] = obs
    k.registry.on_shutdown(obs.close, order=900)
    return obs


def _start_metrics(k: Kernel, obs: Observe, address: tuple[str, int], top: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from aios.kmod.observe.metrics import KernelReader, MetricsCollector

    tally = obs.tally = Tally(k)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(KernelReader(k, tally, top)))
    obs.registry = registry
    host, port = address
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise InvalidArgument(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
    obs.server = server
    obs.address = (host, int(server.server_address[1]))
    k.registry.on_agent_exit(tally.agent_exited)
    obs.subs.append(k.bus.subscribe("security.sandbox", priority=-800, callback=tally.on_sandbox).sid)
    obs.subs.append(k.bus.subscribe("security.violation", priority=-800, callback=tally.on_violation).sid)
    log.info("metrics on http://%s:%d/metrics", host, obs.address[1])
