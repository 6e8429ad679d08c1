"""Libraries the kernel's modules are built from: pure of the kernel itself.

Nothing under ``aios.lib`` imports ``aios.kernel``; the only shared piece is the
error taxonomy (``aios.abi.errors``).  Kernel modules wrap these libraries (a device
on the bus, a syscall handler) and add capabilities, accounting and events.
"""
