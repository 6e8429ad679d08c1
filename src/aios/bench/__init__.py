"""Benchmarks: ``aios bench NAME --json``.

Each benchmark is a module ``aios.bench.<name>`` with a function
``run(argv: list[str]) -> dict[str, float | int]`` that parses its own options,
measures the system against a baseline *in the same run*, and returns one flat
object of numbers (ratios included).  Nothing here asserts a time: the figures
are for people and for the issue notes.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

BenchFn = Callable[[list[str]], dict[str, Any]]


def names() -> list[str]:
    """Every benchmark module in this package, sorted (``llm_embedded`` is ``llm-embedded``)."""
    return sorted(
        m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    )


def load(name: str) -> BenchFn:
    name = name.replace("_", "-")
    if name not in names():
        raise KeyError(name)
    mod = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    fn: BenchFn = mod.run
    return fn
