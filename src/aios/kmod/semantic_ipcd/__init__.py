"""semantic-ipcd: routing intents to skills (``core`` is its sans-IO core, ``service`` the kernel
side, ``syscalls`` its block 120-139, ``service.install`` registers it)."""
