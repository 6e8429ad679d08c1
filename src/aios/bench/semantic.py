"""``aios bench semantic``: routing accuracy at 15, 150 and 1,000 skills, and routing speed.

Data: the routing benchmark under ``tests/data/routing`` (see
:mod:`aios.bench.routing_data`): 156 skills in 13 domains, 10 examples each,
separate validation and test utterances, and out-of-scope utterances.

1. **Fit on validation only.**  The 156 skills are registered (the
   default scorer, the classifier, trains on their descriptions and
   examples only); the decision settings (threshold, margin, and the
   classifier's blend or the centroid scorer's lexical weight) are fit on
   the validation utterances and the validation out-of-scope set
   (:func:`aios.kmod.semantic_ipcd.calibration.fit`), and the
   re-rankers (nearest example, contrastive words; two boldness settings
   each) are tried on validation and one is switched on only if it raises
   top-1 while misrouting stays within 5 % and out-of-scope refusal at 85 %.  ``fit_*`` and ``val_*`` keys report it.
2. **Score the test split once**, through the real router (``route_many``,
   explain mode, so ambiguous results are counted as such): ``top1_150``
   (routed to the right skill), ``misrouted_150`` (routed to a wrong one),
   ``ambiguous_150`` (a clarification instead), ``oos_refused_150`` (out-of-
   scope utterances not delivered to anyone; ``oos_ambiguous_150`` of them got
   a clarification instead of a refusal).
3. **15 skills** (:data:`~aios.bench.routing_data.SMALL_REGISTRY`): the same
   calibration, their test utterances in scope; ``oos_refused_15`` on the
   out-of-scope test set and ``others_refused_15`` on the test utterances of
   the 141 skills not registered (requests no registered skill offers).
4. **1,000 skills**: all skills plus generated distractor skills
   (:func:`~aios.bench.routing_data.distractor_skills`); same calibration.
5. **The previous default** in the same run (unless ``--no-compare``): the
   calibrated centroid scorer, fit and scored the same way:
   ``centroid_top1_150``, ``centroid_oos_refused_15`` etc. and
   ``top1_gain_vs_centroid_150``.  ``--scorer centroid`` makes it the
   scorer under test.
   **Baseline** in the same run: the previous router (score = mean of best
   row and mean row, threshold 0.21, margin 0.01) on the same test data:
   ``baseline_top1_150`` etc.
6. **Speed at 150 skills on cache misses** (the embedder's cache cleared
   before each timed pass): ``routes_per_s_150`` routes concurrent intents
   the way the service does, 32 per batch (one embedding batch, one matrix
   product); ``route_p50_us_150`` / ``route_p99_us_150`` time single routes
   one at a time; ``sequential_routes_per_s_150`` is their rate.  The baseline
   is the same sequential path with the thread settings of the previous
   version (ONNX Runtime and OpenBLAS with a thread per core):
   ``baseline_sequential_routes_per_s_150`` and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aios.bench import routing_data

_BATCH = 32
#: what an in-scope clarification is worth in the classifier's fit, as a fraction of a right
#: route (see :func:`aios.kmod.semantic_ipcd.calibration.fit`)
CLARIFY_VALUE = 0.1


def _build(emb: Any, skills: Sequence[routing_data.SkillSpec], cal: Any = None,
           reranker: Any = None, scorer: str = "classifier") -> Any:
    from aios.kmod.semantic_ipcd.core import SemanticRouter

    r = SemanticRouter(emb, reranker=reranker, scorer=scorer)
    if cal is not None:
        r.set_calibration(cal)
    for s in skills:
        r.register(s.agent, s.skill, s.description, s.examples)
    return r


def _decisions(router: Any, texts: list[str]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(texts), 64):
        out += router.route_many([("bench", t, None) for t in texts[i:i + 64]], explain=True)
    return out


def _score(router: Any, labelled: list[tuple[str, str]], oos: Sequence[str]) -> dict[str, float]:
    ds = _decisions(router, [u for u, _ in labelled])
    n = max(len(labelled), 1)
    top1 = sum(1 for d, (_, s) in zip(ds, labelled, strict=True)
               if d.targets and d.targets[0].skill == s)
    mis = sum(1 for d, (_, s) in zip(ds, labelled, strict=True)
              if d.targets and d.targets[0].skill != s)
    amb = sum(1 for d in ds if d.ambiguous)
    amb_ok = sum(1 for d, (_, s) in zip(ds, labelled, strict=True)
                 if d.ambiguous and any(c.skill == s for c in d.ambiguous))
    od = _decisions(router, list(oos))
    m = max(len(oos), 1)
    return {"top1": top1 / n, "misrouted": mis / n, "ambiguous": amb / n,
            "ambiguous_has_answer": amb_ok / max(amb, 1),
            "refused_in": (n - top1 - mis - amb) / n,
            "oos_refused": sum(1 for d in od if not d.targets and not d.ambiguous) / m,
            "oos_ambiguous": sum(1 for d in od if d.ambiguous) / m}


def _legacy(router: Any, labelled: list[tuple[str, str]], oos: Sequence[str]) -> dict[str, float]:
    """The previous router's decision (blend of best and mean row; 0.21 / 0.01) on the same data."""
    keys = [(s.agent, s.name) for s in router.skills()]
    rows = [router.rows(*k) for k in keys]
    mat = np.concatenate(rows)
    starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
    counts = np.asarray([len(r) for r in rows])

    def decide(texts: list[str]) -> list[str | None]:
        q = router.embedder.embed(texts)
        sims = q @ mat.T
        sc = 0.5 * np.maximum.reduceat(sims, starts, axis=1) + \
            0.5 * np.add.reduceat(sims, starts, axis=1) / counts
        out: list[str | None] = []
        for row in sc:
            o = np.argsort(-row)
            top, second = row[o[0]], row[o[1]]
            out.append(keys[o[0]][1] if top >= 0.21 and top - second >= 0.01 else None)
        return out

    got = decide([u for u, _ in labelled])
    n = max(len(labelled), 1)
    o_got = decide(list(oos))
    return {"top1": sum(g == s for g, (_, s) in zip(got, labelled, strict=True)) / n,
            "misrouted": sum(g is not None and g != s
                             for g, (_, s) in zip(got, labelled, strict=True)) / n,
            "oos_refused": sum(g is None for g in o_got) / max(len(oos), 1)}


def _fit(router: Any, bench: routing_data.RoutingBenchmark) -> tuple[Any, Any]:
    """Fit the decision settings of the router's scorer on the validation split."""
    from aios.kmod.semantic_ipcd import calibration as cal_mod
    from aios.kmod.semantic_ipcd import classifier as clf_mod
    from aios.kmod.semantic_ipcd.core import Scorer

    val = bench.labelled("validation")
    texts = [u for u, _ in val]
    trained = router.scorer is Scorer.CLASSIFIER
    # the classifier's blend of the raw centroid score, or the centroid scorer's lexical weight
    weights = (0.0, 2.5, 5.0, 10.0) if trained else (0.0, 0.25, 0.5, 0.75, 1.0)
    in_z, oos_z, gold = [], [], None
    for w in weights:
        router.set_calibration(
            clf_mod.ClassifierCalibration(0.5, 0.1, w) if trained else
            cal_mod.Calibration(cal_mod.DEFAULT.threshold, cal_mod.DEFAULT.margin, w))
        order, z = router.score_matrix(texts)
        names = [k[1] for k in order]
        gold = np.asarray([names.index(s) for _, s in val])
        in_z.append(z)
        oos_z.append(router.score_matrix(list(bench.oos_validation))[1])
    assert gold is not None
    cal, out = cal_mod.fit(in_z, gold, oos_z, weights, pooled=trained,
                           clarify_value=CLARIFY_VALUE if trained else 0.0)
    fitted: Any = (clf_mod.ClassifierCalibration(cal.threshold, cal.margin, cal.lexical_weight)
                   if trained else cal)
    router.set_calibration(fitted)
    return fitted, out


def _speed(router: Any, texts: list[str], n_seq: int) -> dict[str, float]:
    emb = router.embedder
    emb.clear_cache()
    lat: list[float] = []
    t_all = time.perf_counter()
    for t in texts[:n_seq]:
        t0 = time.perf_counter()
        router.route("bench", t, explain=True)
        lat.append(time.perf_counter() - t0)
    seq = n_seq / (time.perf_counter() - t_all)
    emb.clear_cache()
    batch_texts = texts[n_seq:] or texts
    t0 = time.perf_counter()
    for i in range(0, len(batch_texts), _BATCH):
        router.route_many([("bench", t, None) for t in batch_texts[i:i + _BATCH]], explain=True)
    batched = len(batch_texts) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for t in batch_texts[:n_seq]:  # embedded by the batched pass: cache hits
        router.route("bench", t, explain=True)
    cached = n_seq / (time.perf_counter() - t0)
    lat.sort()
    return {"batched": batched, "sequential": seq, "cached": cached,
            "p50_us": statistics.median(lat) * 1e6,
            "p99_us": lat[int(0.99 * (len(lat) - 1))] * 1e6}


def _evaluate(emb: Any, bench: routing_data.RoutingBenchmark, router: Any,
              large: int) -> dict[str, Any]:
    """Fit on validation, then score the test split once at 150, 15 and ``large`` skills."""
    from aios.kmod.semantic_ipcd.rerank import (
        ContrastiveLexicalReranker,
        NearestExampleReranker,
    )

    scorer = router.scorer.value
    cal, val = _fit(router, bench)
    test = bench.labelled("test")
    # the re-ranker (and how boldly it may override a close call: its scale) is fit on
    # validation too, under the same constraints; it stays off unless it raises top-1
    val_plain = _score(router, bench.labelled("validation"), bench.oos_validation)
    rr: Any = None
    val_rr, tried = val_plain, {}
    for kind, scale in ((NearestExampleReranker, 4.0), (NearestExampleReranker, 1.0),
                        (ContrastiveLexicalReranker, 2.0), (ContrastiveLexicalReranker, 0.5)):
        router.reranker = kind(scale=scale)
        v = _score(router, bench.labelled("validation"), bench.oos_validation)
        tried[f"{router.reranker.name} {scale}"] = v
        if (v["top1"] > val_rr["top1"] and v["misrouted"] <= max(val_plain["misrouted"], 0.05)
                and v["oos_refused"] >= min(val_plain["oos_refused"], 0.85)):
            rr, val_rr = router.reranker, v
    router.reranker = rr
    r150 = _score(router, test, bench.oos_test)

    small = [bench.skill(n) for n in routing_data.SMALL_REGISTRY]
    r15_router = _build(emb, small, cal, rr, scorer)
    names15 = {s.skill for s in small}
    r15 = _score(r15_router, bench.labelled("test", names15), bench.oos_test)
    others = [u for u, s in test if s not in names15]
    others_refused = sum(1 for d in _decisions(r15_router, others) if not d.targets)
    out: dict[str, Any] = {"cal": cal, "val": val, "val_plain": val_plain, "val_rr": val_rr,
                           "tried": tried, "rr": rr, "r150": r150, "r15": r15,
                           "r15_router": r15_router, "others_refused": others_refused,
                           "others": len(others)}
    if large:
        extra = routing_data.distractor_skills(max(0, large - len(bench.skills)))
        t0 = time.perf_counter()
        big = _build(emb, list(bench.skills) + extra, cal, rr, scorer)
        big.score_matrix(["warm up"])  # the refit after registering, timed apart
        out["fit_large_s"] = time.perf_counter() - t0
        out["large_skills"] = len(big.skills())
        out["r1000"] = _score(big, test, bench.oos_test)
    return out


def run(argv: list[str]) -> dict[str, Any]:
    from aios.lib.vectors import threads
    from aios.lib.vectors.embedding import default_embedder, make_embedder

    p = argparse.ArgumentParser(prog="aios bench semantic")
    p.add_argument("--embedder", default=None, help="embedder spec (default: the default)")
    p.add_argument("--data", type=Path, default=None, help="routing benchmark directory")
    p.add_argument("--large", type=int, default=1000, help="size of the large registry (0: skip)")
    p.add_argument("--routes", type=int, default=400, help="sequential routes timed")
    p.add_argument("--quick", action="store_true", help="no large registry, few timed routes")
    p.add_argument("--scorer", choices=("classifier", "centroid"), default="classifier",
                   help="the router's first stage (default: the kernel's default)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the same-run comparison with the centroid scorer")
    p.add_argument("--speed-only", action="store_true",
                   help="only the speed figures (default calibration, no fitting or scoring)")
    a = p.parse_args(argv)
    if a.quick:
        a.large, a.routes = 0, min(a.routes, 60)
    blas_before = threads.set_blas_threads(1)
    bench = routing_data.load(a.data)
    if a.embedder:
        emb = make_embedder(a.embedder, batch_size=64)
        emb_name = emb.name
    else:
        emb, choice = default_embedder()
        emb_name = choice.name
    emb.batch_size = max(emb.batch_size, 64)
    emb._capacity = max(emb._capacity, 20_000)

    t0 = time.perf_counter()
    router = _build(emb, bench.skills, scorer=a.scorer)
    register_s = time.perf_counter() - t0
    if a.speed_only:
        return _speed_report(router, bench, emb_name, a, blas_before)
    ev = _evaluate(emb, bench, router, a.large)
    cal, val, rr, tried = ev["cal"], ev["val"], ev["rr"], ev["tried"]
    val_plain, val_rr, r150, r15 = ev["val_plain"], ev["val_rr"], ev["r150"], ev["r15"]
    test = bench.labelled("test")
    names15 = set(routing_data.SMALL_REGISTRY)
    base150 = _legacy(router, test, bench.oos_test)
    base15 = _legacy(ev["r15_router"], bench.labelled("test", names15), bench.oos_test)
    others_refused, n_others = ev["others_refused"], ev["others"]
    out: dict[str, Any] = {}
    if "r1000" in ev:
        r1000 = ev["r1000"]
        out.update({"skills_large": ev["large_skills"],
                    "top1_1000": round(r1000["top1"], 4),
                    "oos_refused_1000": round(r1000["oos_refused"], 4),
                    "misrouted_1000": round(r1000["misrouted"], 4),
                    "ambiguous_1000": round(r1000["ambiguous"], 4),
                    "register_and_fit_1000_s": round(ev["fit_large_s"], 1)})
    if a.compare and a.scorer != "centroid":
        # the previous default (the calibrated centroid scorer), fit and scored the same way
        other = _evaluate(emb, bench, _build(emb, bench.skills, scorer="centroid"), 0)
        for k in ("top1", "oos_refused", "misrouted", "ambiguous"):
            out[f"centroid_{k}_150"] = round(other["r150"][k], 4)
        for k in ("top1", "oos_refused", "misrouted"):
            out[f"centroid_{k}_15"] = round(other["r15"][k], 4)
        out["centroid_val_top1_150"] = round(other["val"].top1, 4)
        out["top1_gain_vs_centroid_150"] = round(r150["top1"] - other["r150"]["top1"], 4)
    sp_out = _speed_report(router, bench, emb_name, a, blas_before)
    out = {
        "top1_150": round(r150["top1"], 4),
        "oos_refused_150": round(r150["oos_refused"], 4),
        "misrouted_150": round(r150["misrouted"], 4),
        "top1_15": round(r15["top1"], 4),
        "oos_refused_15": round(r15["oos_refused"], 4),
        **sp_out,
        **out,
        "ambiguous_150": round(r150["ambiguous"], 4),
        "ambiguous_lists_answer_150": round(r150["ambiguous_has_answer"], 4),
        "refused_in_scope_150": round(r150["refused_in"], 4),
        "oos_ambiguous_150": round(r150["oos_ambiguous"], 4),
        "misrouted_15": round(r15["misrouted"], 4),
        "ambiguous_15": round(r15["ambiguous"], 4),
        "others_refused_15": round(others_refused / max(n_others, 1), 4),
        "baseline_top1_150": round(base150["top1"], 4),
        "baseline_oos_refused_150": round(base150["oos_refused"], 4),
        "baseline_misrouted_150": round(base150["misrouted"], 4),
        "baseline_top1_15": round(base15["top1"], 4),
        "baseline_oos_refused_15": round(base15["oos_refused"], 4),
        "misrouted_ratio_vs_baseline_150": round(
            r150["misrouted"] / base150["misrouted"], 3) if base150["misrouted"] else None,
        "scorer": a.scorer, "fit": cal.as_dict(),
        "reranker": f"{rr.name} (scale {rr.scale})" if rr is not None else None,
        "val_rerank_tried": {k: {"top1": round(v["top1"], 4),
                                      "misrouted": round(v["misrouted"], 4)}
                             for k, v in tried.items()},
        "val_top1_150": round(val.top1, 4), "val_oos_refused_150": round(val.oos_refused, 4),
        "val_misrouted_150": round(val.misrouted, 4),
        "val_rerank_top1_gain": round(val_rr["top1"] - val_plain["top1"], 4),
        "val_ambiguous_150": round(val_plain["ambiguous"], 4),
        "skills": len(router.skills()), "domains": len(bench.domains),
        "test_utterances": len(test), "oos_test_utterances": len(bench.oos_test),
        "register_150_s": round(register_s, 2), "embedder": emb_name,
        "embed_threads": threads.intra_op_threads(),
    }
    return out


def _previous_minilm(cls: Any) -> Any:
    """MiniLM as the previous version ran it: ONNX Runtime's defaults (a thread per core,
    spinning threads), not this version's deliberate single thread."""
    import onnxruntime as ort

    from aios.lib.vectors import minilm

    e = cls("onnx", batch_size=64)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    e._enc._sess = ort.InferenceSession(minilm.build_fp32_onnx(), sess_options=opts,
                                        providers=["CPUExecutionProvider"])
    return e


def _speed_report(router: Any, bench: routing_data.RoutingBenchmark, emb_name: str, a: Any,
                  blas_before: int | None) -> dict[str, Any]:
    """Speed at 150 skills on cache misses, and the previous thread settings as the baseline."""
    from aios.lib.vectors import threads

    texts = [u for u, _ in bench.labelled("test")]
    sp = _speed(router, texts, a.routes)
    out: dict[str, Any] = {
        "routes_per_s_150": round(sp["batched"], 1),
        "route_p99_us_150": round(sp["p99_us"], 1),
        "route_p50_us_150": round(sp["p50_us"], 1),
        "sequential_routes_per_s_150": round(sp["sequential"], 1),
        "cached_routes_per_s_150": round(sp["cached"], 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if emb_name.startswith("minilm") and not a.embedder:
        # The previous settings (a thread per core for ONNX Runtime and OpenBLAS, spinning
        # on), timed in blocks interleaved with the new ones so both see the same load.
        from aios.lib.vectors.embedding import MiniLMEmbedder

        emb = router.embedder
        old = _previous_minilm(MiniLMEmbedder)
        cores = os.cpu_count() or 1
        lat: dict[str, list[float]] = {"new": [], "old": []}
        n = min(a.routes, 200)
        for start in range(0, n, 20):
            for tag, e, blas in (("new", emb, 1), ("old", old, cores)):
                threads.set_blas_threads(blas)
                router.embedder = e
                e.clear_cache()
                for t in texts[start:start + 20]:
                    t0 = time.perf_counter()
                    router.route("bench", t, explain=True)
                    lat[tag].append(time.perf_counter() - t0)
        # the thread settings must not change a single decision
        sample = [("bench", t, None) for t in texts[:n]]
        router.embedder = old
        before = [(d.verdict, [c.skill for c in d.targets], [c.skill for c in d.ambiguous])
                  for d in router.route_many(sample, explain=True)]
        router.embedder = emb
        threads.set_blas_threads(1)
        after = [(d.verdict, [c.skill for c in d.targets], [c.skill for c in d.ambiguous])
                 for d in router.route_many(sample, explain=True)]
        out["decisions_differing_from_baseline"] = sum(x != y for x, y in
                                                       zip(before, after, strict=True))
        new_rate = len(lat["new"]) / sum(lat["new"])
        old_rate = len(lat["old"]) / sum(lat["old"])
        out.update({
            "interleaved_sequential_routes_per_s_150": round(new_rate, 1),
            "baseline_sequential_routes_per_s_150": round(old_rate, 1),
            "baseline_route_p50_us_150": round(statistics.median(lat["old"]) * 1e6, 1),
            "sequential_speedup_vs_baseline": round(new_rate / old_rate, 2),
            "batched_speedup_vs_baseline": round(sp["batched"] / old_rate, 2),
        })
    if blas_before is not None:
        threads.set_blas_threads(blas_before)
    return out
