"""Observability: Prometheus metrics read from kernel state, OpenTelemetry traces of IPC."""
