"""Workflows and pipelines: graphs of steps with control flow, run durably.

* :mod:`~aios.lib.orchestration.workflow`: the definition format (data, TOML,
  JSON, builders) and its checks.
* :mod:`~aios.lib.orchestration.runtime`: the sans-IO interpreter (retries,
  timeouts, approvals, cancellation, checkpoints and resume).
* :mod:`~aios.lib.orchestration.driver`: running it under asyncio with
  handlers, resources released on cancellation, and a checkpoint sink.

Nothing here imports the kernel; ``ctx.run_workflow``, ``aios workflow`` and
``aios approve`` come with the kernel module (see ``docs/cognitive.md``).
"""
