"""The cognitive runtime's pure cores: context windows, plans, the planner.

* :mod:`~aios.lib.cognitive.tokenizer` (and :mod:`~aios.lib.cognitive.gguf`):
  counting in the model's own tokens.
* :mod:`~aios.lib.cognitive.context`: per-agent context windows with memory
  pressure, eviction to recall with a recursive summary, archival injection,
  snapshot and restore.
* :mod:`~aios.lib.cognitive.plan`: plans as DAGs of skill steps with ``$N``
  references, their schema, validation and ``explain``.
* :mod:`~aios.lib.cognitive.htn`: the deterministic planner (HTN decomposition).
* :mod:`~aios.lib.cognitive.planner`: the model planner, fallback and replanning.
* :mod:`~aios.lib.cognitive.dagrun`: executing a plan, independent steps in parallel.

Nothing here imports the kernel; the kernel module that exposes these to
agents (syscalls, ``ctx.plan``, charging through the LLM device) wraps them.
"""
