"""The AIOS kernel: sans-IO tables (agents, capabilities, IPC, memory, events) and the loop
that drives agents over them.  Nothing outside this package imports its tables; agents reach
it only through :mod:`aios.abi.trap`."""
