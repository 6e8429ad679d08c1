"""The security kernel module: the glue that puts the security libraries (``aios.lib``:
crypto, identities, the audit log, attestation, Cedar policy, behavior, tokens) into a
running kernel: the audit pump and per-agent identities (``audit``), the policy gate and
behavior responder (``policy``), the token bridge (``tokens``), the node's keys and
measured boot (``node``), its syscalls (``syscalls``), and ``glue.install``."""
