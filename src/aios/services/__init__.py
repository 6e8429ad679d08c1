"""Userland services of AIOS (whitepaper 2.3): agentsupervisor, memoryd, semantic-ipcd.

Each has a sans-IO ``core`` and, where it needs I/O, a thin service module the kernel wires in."""
