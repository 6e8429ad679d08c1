"""Event topics the kernel reserves, and the ones the audit log records.

One copy of each list.  :data:`KERNEL_TOPIC_PREFIXES`: an agent may publish
under these only with ADMIN on the topic capability.  :data:`AUDITED`: every
event whose topic matches is appended to the audit log; an entry ending in
``.`` is a prefix (every topic under it), any other entry names one topic.
:data:`AUDIT_PATTERNS` (the bus's subscription patterns) and
:data:`AUDIT_PREFIXES` (the recorder's ``startswith`` test) are derived from
it, so the two can never disagree.
"""

from __future__ import annotations

from typing import Final

KERNEL_TOPIC_PREFIXES: Final = (
    "agent.", "security.", "ipc.", "kernel.", "cap.", "perf.", "mem.", "policy.", "sched.", "semantic.",
    "dev.", "llm.",
)

AUDITED: Final = (
    "security.",
    "agent.lifecycle.",
    "agent.fault",
    "agent.supervisor.",
    "agent.directory.",
    "cap.",
    "policy.",
    "identity.",
    "attest.",
    "token.",
    "audit.",
    "sandbox.",
    "kernel.panic",
    "kernel.booted",
    "sched.changed",
    "semantic.",
    "mem.namespace.",
    "dev.",
)

AUDIT_PREFIXES: Final = AUDITED
AUDIT_PATTERNS: Final = tuple(t + "**" if t.endswith(".") else t for t in AUDITED)
