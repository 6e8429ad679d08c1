"""``aios bench semantic``: routing throughput, latency and accuracy.

Registers the routing set's skills (tests/data/routing_set.json) and pads
the registry to ``--skills`` (default 100) with generated skills from other
domains, so scoring works over a realistic registry.  Then:

* ``routes_per_s`` and ``route_p50_us`` / ``route_p99_us``: full
  ``route()`` calls (embed the intent, score every skill, decide, extract
  slots) on distinct utterances, the embedder's cache cleared first, so
  every route pays for one MiniLM embedding;
* ``cached_routes_per_s``: the same intents again (cache hits: scoring and
  deciding only);
* ``accuracy``, ``ood_refused``, ``in_domain_refused``, ``misrouted``:
  on the routing set with the 12 real skills only, the default thresholds
  and the default embedder;
* ``baseline_scan_routes_per_s``: the naive router as a baseline — one
  embedding per skill example at route time instead of a pre-embedded
  matrix (what a service without a registry index would do), measured on
  a few intents.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

_DOMAINS = ("gardening", "astronomy", "plumbing", "chess", "poetry", "geology", "knitting",
            "aquariums", "woodworking", "photography", "beekeeping", "origami", "sailing",
            "pottery", "birdwatching", "calligraphy", "fencing", "archery", "surfing", "welding")
_ACTS = ("tips", "history", "tools", "lessons", "repairs")


def default_set_path() -> Path:
    return Path(__file__).resolve().parents[3] / "tests" / "data" / "routing_set.json"


def load_set(path: Path | None) -> dict[str, Any]:
    from aios.errors import NoSuchObject

    p = path or default_set_path()
    if not p.is_file():
        raise NoSuchObject(f"routing set not found at {p}; pass --set PATH")
    data: dict[str, Any] = json.loads(p.read_text())
    return data


def filler_skills(count: int) -> list[tuple[str, str, str, list[str]]]:
    out = []
    for i in range(count):
        d, act = _DOMAINS[i % len(_DOMAINS)], _ACTS[(i // len(_DOMAINS)) % len(_ACTS)]
        out.append((f"{d}-{act}-agent", f"{d}.{act}", f"{act.capitalize()} about {d}.",
                    [f"give me {act} on {d}", f"I need {d} {act}", f"help with {d} {act}"]))
    return out


def run(argv: list[str]) -> dict[str, Any]:
    from aios.memory.embedding import default_embedder
    from aios.services.semantic_ipcd.core import SemanticRouter

    p = argparse.ArgumentParser(prog="aios bench semantic")
    p.add_argument("--skills", type=int, default=100)
    p.add_argument("--routes", type=int, default=300)
    p.add_argument("--set", type=Path, default=None)
    a = p.parse_args(argv)
    data = load_set(a.set)
    emb, choice = default_embedder()

    # accuracy on the real set
    router = SemanticRouter(emb)
    for s in data["skills"]:
        router.register(s["agent"], s["skill"], s["description"], s["examples"],
                        schema=s.get("schema"))
    utts = data["utterances"]
    ok = refused = 0
    for u in utts:
        d = router.route("bench", u["text"], explain=True)
        if not d.targets:
            refused += 1
        elif d.targets[0].skill == u["skill"]:
            ok += 1
    ood = sum(1 for t in data["out_of_domain"] if not router.route("bench", t, explain=True).targets)

    # throughput with a padded registry
    for agent, name, desc, ex in filler_skills(max(0, a.skills - len(data["skills"]))):
        router.register(agent, name, desc, ex)
    intents = [u["text"] for u in utts][: a.routes]
    emb.clear_cache()
    lat: list[float] = []
    t_all = time.perf_counter()
    for text in intents:
        t0 = time.perf_counter()
        router.route("bench", text, explain=True)
        lat.append(time.perf_counter() - t0)
    routes_per_s = len(intents) / (time.perf_counter() - t_all)
    t0 = time.perf_counter()
    for text in intents:
        router.route("bench", text, explain=True)
    cached = len(intents) / (time.perf_counter() - t0)

    # baseline: embed every skill text at route time
    texts = [t for s in router.skills() for t in (s.description, *s.examples)]
    nb = 3
    t0 = time.perf_counter()
    for text in intents[:nb]:
        emb.clear_cache()
        m = emb.embed(texts)
        q = emb.embed([text])[0]
        int(np.argmax(m @ q))
    baseline = nb / (time.perf_counter() - t0)

    n = len(utts)
    return {
        "skills": len(router.skills()),
        "routes_per_s": round(routes_per_s, 1),
        "route_p50_us": round(statistics.median(lat) * 1e6, 1),
        "route_p99_us": round(sorted(lat)[int(0.99 * (len(lat) - 1))] * 1e6, 1),
        "cached_routes_per_s": round(cached, 1),
        "baseline_scan_routes_per_s": round(baseline, 2),
        "speedup_vs_scan": round(routes_per_s / baseline, 1),
        "accuracy": round(ok / n, 4),
        "misrouted": round((n - ok - refused) / n, 4),
        "in_domain_refused": round(refused / n, 4),
        "ood_refused": round(ood / len(data["out_of_domain"]), 4),
        "utterances": n,
        "out_of_domain": len(data["out_of_domain"]),
        "threshold": router.threshold,
        "margin": router.margin,
        "embedder_is_minilm": int(choice.name.startswith("minilm")),
    }
