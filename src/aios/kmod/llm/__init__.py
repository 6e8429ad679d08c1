"""The LLM device kernel module: language models as devices of the bus (``budget``: token
budgets up the capability chain, sans I/O; ``service``: queues, drivers, calls; ``syscalls``:
block 180-189; ``service.install`` registers it)."""
