"""The device bus kernel module (``table`` is the kernel side of the pure bus in
:mod:`aios.lib.devices`, ``syscalls`` its block 175-179, ``table.install`` registers it)."""
