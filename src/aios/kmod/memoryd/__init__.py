"""memoryd: the semantic memory fabric (``core`` is its sans-IO core over ``db`` and ``archive``,
``service`` the kernel side, ``syscalls`` its block 100-119, ``service.install`` registers it)."""
