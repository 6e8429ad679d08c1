"""Demonstration workloads (``aios demo``)."""
