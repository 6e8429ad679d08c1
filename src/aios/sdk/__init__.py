"""The AIOS SDK: what agent authors import.

An agent reaches the kernel only through traps (:mod:`aios.abi.trap`);
this package wraps every syscall (:mod:`aios.sdk.syscalls`) and offers the
:class:`Context` an agent receives and the :class:`Agent` base class.
"""

from aios.abi.errors import AIOSError
from aios.sdk.agent import Agent, load_entry, start_function
from aios.sdk.context import Child, Context, Slots, entry_for

__all__ = [
    "AIOSError",
    "Agent",
    "Child",
    "Context",
    "Slots",
    "entry_for",
    "load_entry",
    "start_function",
]
