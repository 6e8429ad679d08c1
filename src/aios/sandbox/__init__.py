"""Running agents outside the kernel process: the isolated executor (zygote, namespaces,
Landlock, seccomp, rlimits, cgroups), worker processes and Wasm stores, behind one executor
interface (:mod:`aios.sandbox.executor`)."""
