"""Language models as devices: one driver interface, three drivers, a simulator.

* :mod:`~aios.lib.llm.chat`: the interface (requests, streamed chunks, usage).
* :mod:`~aios.lib.llm.openai`: the OpenAI wire format, sans I/O.
* :mod:`~aios.lib.llm.embedded`: llama.cpp in-process (the ``llm`` extra).
* :mod:`~aios.lib.llm.http`: OpenAI-compatible endpoints over httpx.
* :mod:`~aios.lib.llm.simengine`, :mod:`~aios.lib.llm.simserver`: a simulated
  serving engine, and the same behind loopback HTTP.
* :mod:`~aios.lib.llm.simrun`, :mod:`~aios.lib.llm.simpolicies`: a harness that
  runs request schedulers against the simulated engine on virtual time, and
  the baselines they are measured against.
"""

from aios.lib.llm.chat import (
    ChatChunk,
    ChatDriver,
    ChatRequest,
    ChatResult,
    DriverInfo,
    Message,
    ToolCall,
    ToolSpec,
    Usage,
    collect,
    system,
    user,
)

__all__ = [
    "ChatChunk",
    "ChatDriver",
    "ChatRequest",
    "ChatResult",
    "DriverInfo",
    "Message",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "collect",
    "system",
    "user",
]
