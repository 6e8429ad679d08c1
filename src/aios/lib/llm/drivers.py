"""The LLM drivers as the device bus sees them: entry points in ``aios.drivers``.

``pyproject.toml`` declares these two objects under
``[project.entry-points."aios.drivers"]``; :meth:`aios.lib.devices.DeviceBus.discover`
loads them.  Factories import their driver lazily, so discovering drivers
costs no import of llama.cpp or httpx.
"""

from __future__ import annotations

from typing import Any

from aios.lib.devices import DriverSpec


def _embedded(**config: Any) -> Any:
    from aios.lib.llm.embedded import EmbeddedDriver

    return EmbeddedDriver(**config)


def _http(**config: Any) -> Any:
    from aios.lib.llm.http import HttpDriver

    return HttpDriver(**config)


EMBEDDED = DriverSpec("llm-embedded", "llm", "1.0.0", _embedded,
                      "llama.cpp in-process (xllamacpp); default SmolLM2-135M-Instruct")
HTTP = DriverSpec("llm-http", "llm", "1.0.0", _http,
                  "OpenAI-compatible HTTP endpoint (vLLM, Ollama, llama.cpp server, hosted)")
