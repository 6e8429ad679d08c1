"""supervision: restart policies, start limits and fault domains (whitepaper 2.3's agentsupervisor).

``core`` is the sans-IO supervisor (systemd's ``Restart=`` and start limits, OTP's trees);
``service`` feeds it what the kernel sees and carries out what it decides, and ``install``
registers it with the kernel (``k.ext[SUPERVISOR]`` and an agent-exit hook)."""
