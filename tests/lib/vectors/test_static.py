"""The static WordLlama embedder: weights from the installed wheel, no network, no import of it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from aios.abi.errors import NoSuchObject
from aios.lib.vectors.embedding import make_embedder
from aios.lib.vectors.static import StaticEmbedder


def test_vectors_are_unit_deterministic_and_meaningful() -> None:
    e = make_embedder("wordllama")
    assert e.name == "wordllama-256" and e.dim == 256
    v = e.embed(["book a flight to rome", "reserve a plane ticket to rome",
                 "what is my bank balance", "book a flight to rome"])
    assert v.shape == (4, 256) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(v[0], v[3])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    assert "wordllama" not in sys.modules  # the package's own code is never imported


def test_missing_files_are_a_clear_error(tmp_path) -> None:
    with pytest.raises(NoSuchObject, match="static embedding file missing"):
        StaticEmbedder(tmp_path)
