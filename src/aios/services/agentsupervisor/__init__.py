"""agentsupervisor: agent images, verification and supervision."""
