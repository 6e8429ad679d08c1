"""The environment an agent process starts with: empty, plus an allowlist.

The daemon's environment is the operator's: it may hold the keystore
passphrase (``AIOS_KEY_PASSPHRASE``), cloud credentials, API keys, tokens.
A process that forks agents must not pass it on, because an agent reads its
own ``os.environ`` without any syscall the kernel could refuse.  So the
zygote and the worker processes are started from an *empty* environment
plus exactly these, and agents forked from them inherit nothing else:

* locale and time zone (``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``), copied
  when set: they change how text is decoded, and carry nothing private;
* ``PATH``, fixed to :data:`MINIMAL_PATH` (never the operator's);
* ``PYTHONPATH`` (built by AIOS: its own source tree and the interpreter's
  path), ``PYTHONDONTWRITEBYTECODE`` and ``PYTHONNOUSERSITE``;
* AIOS's own settings that carry no secret (:data:`AIOS_PUBLIC`).

A secret reaches an agent only as a capability (a memory region, a message,
a token), which the kernel can account for and revoke.  This module is the
one definition; the isolated executor's test-only ``env`` switch (see
:func:`aios.kernel.confinement.weaken_for_tests`) passes the whole
environment instead, so the hostile tests can show the leak it prevents.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Final

MINIMAL_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
LOCALE: Final = ("LANG", "LANGUAGE", "TZ")
AIOS_PUBLIC: Final = ("AIOS_EMBEDDER",)  # names of embedders, never keys or passphrases


def agent_environment(source: Mapping[str, str] | None = None, *, scrub: bool = True) -> dict[str, str]:
    """The environment for a process that will run agents (the zygote, a worker)."""
    src = os.environ if source is None else source
    if scrub:
        env = {k: v for k, v in src.items() if k in LOCALE or k.startswith("LC_") or k in AIOS_PUBLIC}
        env["PATH"] = MINIMAL_PATH
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONNOUSERSITE"] = "1"
    else:
        env = dict(src)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, *[p for p in sys.path if p]])
    return env


def allowed(name: str) -> bool:
    """Whether ``name`` may appear in a scrubbed agent environment."""
    return (name in LOCALE or name.startswith("LC_") or name in AIOS_PUBLIC
            or name in ("PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE"))
