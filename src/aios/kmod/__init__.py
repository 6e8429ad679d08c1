"""Kernel modules: each wraps a pure core (or a library of ``aios.lib``) and registers its
syscall block, executor factories, hooks and per-kernel state with the kernel's registry
in ``install(kernel, config)``; ``aios.boot`` calls them in the whitepaper's boot order.
initd and journal are pure cores, not wired yet."""
