"""Kernel modules: each wraps a pure core and, once the kernel registry lands, registers its
syscalls and hooks with ``install(kernel, config)``."""
