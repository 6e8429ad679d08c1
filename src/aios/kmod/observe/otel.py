"""The ``otel`` extra: an OpenTelemetry SDK provider for ``aios up --trace``.

The kernel's tracer (:mod:`aios.kmod.observe.tracing`) speaks only the
OpenTelemetry API.  A daemon started with ``--trace RATIO`` needs a provider
that records and exports spans; this builds one from the SDK and an exporter,
imported here and only here, lazily, so a kernel without tracing never loads
them.  The sampler follows the parent (the kernel samples roots itself at
RATIO, so every span the kernel starts is meant to be kept), the resource is
``service.name=aios``, spans leave in batches.

The exporter is chosen the OpenTelemetry way, by ``OTEL_TRACES_EXPORTER``:
``otlp`` (the default: OTLP over HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``http://localhost:4318`` unless set) or ``console`` (JSON lines on stderr).
"""

from __future__ import annotations

import os
from typing import Any

from aios.abi.errors import InvalidArgument

EXPORTERS = ("otlp", "console")


def sdk_provider(exporter: str | None = None) -> Any:
    """A TracerProvider with a batch processor and the chosen exporter (``None``: from
    ``OTEL_TRACES_EXPORTER``, default ``otlp``); InvalidArgument if the extra is missing."""
    name = (exporter or os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if name not in EXPORTERS:
        raise InvalidArgument(f"trace exporter must be one of {EXPORTERS}, got {name!r} (OTEL_TRACES_EXPORTER)")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
    except ImportError:
        raise InvalidArgument("tracing needs the OpenTelemetry SDK: pip install 'aios[otel]'") from None
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise InvalidArgument("the otlp trace exporter needs: pip install 'aios[otel]'") from None
        out: Any = OTLPSpanExporter()
    else:
        out = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "aios"}), sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(BatchSpanProcessor(out))
    return provider
