"""``aios bench planner``: a planner's parallel DAG against one step per model call.

The workload has the shape of LLMCompiler's ParallelQA: questions that need
several independent lookups and one combination ("What is the total population
of Lagos, Cairo and Lima?", "Which of K2, Lhotse and Makalu is the highest?",
"What is the difference in length between the Nile and the Amazon?"), with 2 to
5 lookups each.  Lookups are a web-search tool with a latency (0.3-1.2 s,
seeded per question and entity, the same in both modes); combining is a local
tool (10 ms).  Model calls run on the simulated serving engine
(:class:`~aios.lib.llm.simengine.SimEngine`, its default configuration) on
virtual time; their prompt and output sizes are the real texts' sizes counted
with the embedded model's tokenizer (the GGUF vocabulary; a tokenizer-free
estimate if the model package is not installed).

Two agents answer every question, one question at a time on an idle engine:

* **sequential** (ReAct, Yao et al. 2023): one model call per step.  Each
  call's prompt is the instructions, the tools, the question and the
  scratchpad so far (every earlier thought, action and observation); it
  writes a thought and one action; the tool runs; its observation is
  appended; the next call follows.  After the lookups, a call for the combine
  action, then one for the final answer: k + 2 calls, tools one after
  another.
* **planner** (LLMCompiler, Kim et al. 2024, as built here): one call writes
  the whole plan as JSON (the real planner prompt of
  :class:`~aios.lib.cognitive.planner.ModelPlanner`, with its worked example
  and schema), the plan is validated and executed by
  :class:`~aios.lib.cognitive.dagrun.PlanRun` with the lookups in parallel,
  and one joiner call writes the answer from the results: 2 calls.

**Who writes the plans.**  The simulated engine produces token timings, not
text.  The texts both agents emit are scripted from the HTN decomposition of
the question (:mod:`~aios.lib.cognitive.recipes`): the plan JSON a competent
model would write, and the ReAct thoughts and actions that do the same steps.
Those scripted plans are valid by construction (their validity rate, 1.0, is
reported as ``plan_valid_rate_scripted``).  With the embedded model installed
the bench also has **SmolLM2-135M plan the first ``--model-goals`` questions
for real** (schema-constrained, temperature 0): how many of its plans pass
validation the first time (``plan_valid_rate_model``), how many give the right
answer when run (``answer_correct_rate_model``), and the speedup when the
plans actually executed (the model's when valid, the HTN fallback's
otherwise) and the model's real token counts are timed on the simulated
engine.  The headline ``plan_valid_rate`` is the model's when it was measured
(``plan_valid_rate_source`` says which); ``speedup_vs_sequential`` and
``tokens_ratio_vs_sequential`` are the scripted workload's.

Headline keys: ``speedup_vs_sequential`` (mean sequential latency over mean
planner latency; goal >= 2), ``tokens_ratio_vs_sequential`` (planner tokens
over sequential tokens, prompt and output), ``plan_valid_rate``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aios.abi.errors import NoSuchObject
from aios.lib.cognitive.dagrun import PlanRun, StartStep
from aios.lib.cognitive.htn import HtnPlanner
from aios.lib.cognitive.plan import Catalogue, Plan, SkillSpec, check, parse_plan, validate
from aios.lib.cognitive.planner import ModelPlanner
from aios.lib.cognitive.planstream import StepStream, StreamValidator
from aios.lib.cognitive.recipes import COMBINE, LOOKUP_PARAMS, combine, lookup_methods
from aios.lib.cognitive.simexec import ToolWork, VirtualLoop, Work, start_plan
from aios.lib.cognitive.tokenizer import EstimateTokenizer, Tokenizer, count_chat
from aios.lib.llm.chat import Message
from aios.lib.llm.simengine import EngineConfig, SimEngine

MS: Final = 1_000_000
SEARCH = SkillSpec("search", "look up one attribute of one entity on the web", LOOKUP_PARAMS,
                   frozenset({"net"}), 0)
CATALOGUE = Catalogue([SEARCH, COMBINE])
HELD = frozenset({"net"})
EXAMPLES = (
    ("What is the total area of France and Spain?", {"steps": [
        {"id": 1, "skill": "search", "args": {"entity": "France", "attribute": "area"},
         "deps": []},
        {"id": 2, "skill": "search", "args": {"entity": "Spain", "attribute": "area"},
         "deps": []},
        {"id": 3, "skill": "combine", "args": {"values": ["$1", "$2"], "op": "sum"},
         "deps": [1, 2]}], "answer": "$3"}),
    ("Which of Chile, Peru and Cuba has the largest area?", {"steps": [
        {"id": 1, "skill": "search", "args": {"entity": "Chile", "attribute": "area"},
         "deps": []},
        {"id": 2, "skill": "search", "args": {"entity": "Peru", "attribute": "area"},
         "deps": []},
        {"id": 3, "skill": "search", "args": {"entity": "Cuba", "attribute": "area"},
         "deps": []},
        {"id": 4, "skill": "combine", "args": {"values": ["$1", "$2", "$3"], "op": "argmax"},
         "deps": [1, 2, 3]}], "answer": "$4"}),
)
DOMAINS: Final = {
    "population": ["Lagos", "Cairo", "Lima", "Dhaka", "Tokyo", "Delhi", "Paris", "Rome",
                   "Oslo", "Berlin", "Madrid", "Nairobi"],
    "height": ["Everest", "K2", "Lhotse", "Makalu", "Denali", "Kilimanjaro", "Elbrus",
               "Aconcagua"],
    "length": ["Nile", "Amazon", "Yangtze", "Danube", "Volga", "Mekong", "Niger", "Rhine"],
}
REACT_SYSTEM: Final = (
    "Answer the question using the tools. Use this format:\n"
    "Thought: what to do next\nAction: tool[json arguments]\nObservation: the tool's result\n"
    "... (repeat Thought/Action/Observation as needed)\n"
    "Thought: I now know the final answer\nFinal Answer: the answer\nTools:\n")
JOINER_SYSTEM: Final = (
    "You are given a question and the results of a plan that was run to answer it. "
    "Decide whether the results answer the question. If they do, reply "
    "'Action: Finish(answer)'; otherwise reply 'Action: Replan(what is missing)'.")


@dataclass(frozen=True, slots=True)
class Goal:
    index: int
    text: str
    attribute: str
    entities: tuple[str, ...]
    op: str


def make_goals(n: int, seed: int) -> list[Goal]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        attr = rng.choice(sorted(DOMAINS))
        k = rng.choice((2, 3, 4, 5))
        ents = tuple(rng.sample(DOMAINS[attr], k))
        op = rng.choice(("sum", "mean", "argmax", "argmin", "difference")
                        if k == 2 else ("sum", "mean", "argmax", "argmin"))
        items = ", ".join(ents[:-1]) + " and " + ents[-1]
        text = {
            "sum": f"What is the total {attr} of {items}?",
            "mean": f"What is the average {attr} of {items}?",
            "difference": f"What is the difference in {attr} between {ents[0]} and {ents[1]}?",
            "argmax": f"Which of {items} has the highest {attr}?",
            "argmin": f"Which of {items} has the lowest {attr}?",
        }[op]
        out.append(Goal(i, text, attr, ents, op))
    return out


class World:
    """Facts and tool latencies, seeded: the same in every mode of the same run."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _rng(self, *key: object) -> random.Random:
        return random.Random(f"{self.seed}:" + ":".join(map(str, key)))

    def fact(self, entity: str, attribute: str) -> dict[str, Any]:
        value = round(self._rng("fact", entity.lower(), attribute).uniform(1, 9000), 1)
        return {"entity": entity, "attribute": attribute, "value": value}

    def latency_ns(self, goal: int, entity: str) -> int:
        return int(self._rng("lat", goal, entity.lower()).uniform(300, 1200) * MS)

    def truth(self, g: Goal) -> Any:
        return combine([self.fact(e, g.attribute) for e in g.entities], g.op)

    def work(self, g: Goal) -> Callable[[StartStep], Work]:
        def w(st: StartStep) -> Work:
            if st.skill == "search":
                ent = str(st.args["entity"])
                try:
                    return ToolWork(self.latency_ns(g.index, ent),
                                    self.fact(ent, str(st.args["attribute"])))
                except NoSuchObject as e:
                    return ToolWork(self.latency_ns(g.index, ent), e)
            return ToolWork(10 * MS, combine(st.args["values"], str(st.args["op"])))

        return w


def plan_text(plan: Plan) -> str:
    """The plan JSON in the style of the planner prompt's example."""
    d = plan.to_data()
    return json.dumps({"steps": d["steps"], "answer": d["answer"]}, separators=(", ", ": "))


@dataclass(slots=True)
class Outcome:
    latency_ns: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    llm_calls: int = 0
    answer: Any = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


def _engine(cfg: EngineConfig) -> VirtualLoop:
    return VirtualLoop(SimEngine(cfg))


def run_planner(g: Goal, world: World, tok: Tokenizer, cfg: EngineConfig,
                plan: Plan, planning: tuple[int, int], text: str | None = None) -> Outcome:
    """One question by the planner: the planning call (prompt, output tokens), the
    DAG on virtual time, the joiner call.  With the plan's ``text`` the steps are
    streamed: each is released when the model has written it (its token offset)."""
    loop = _engine(cfg)
    out = Outcome()

    def joiner(run: PlanRun) -> None:
        results = "\n".join(f"{s.id}. {s.skill}({json.dumps(dict(s.args))}) -> "
                            f"{json.dumps(run.results.get(s.id))}" for s in plan.steps)
        req = (Message("system", JOINER_SYSTEM),
               Message("user", f"Question: {g.text}\nPlan results:\n{results}"))
        answer = f"Thought: the results answer the question.\nAction: Finish({run.answer})"
        p, o = count_chat(tok, req), tok.count(answer)
        out.prompt_tokens += p
        out.output_tokens += o
        out.answer = run.answer
        loop.llm(p, o, lambda: None)

    out.prompt_tokens, out.output_tokens = planning
    if text is None:
        def execute() -> None:
            run = PlanRun(plan, CATALOGUE, lambda: HELD)
            start_plan(loop, run, world.work(g), lambda: joiner(run))

        loop.llm(planning[0], planning[1], execute)
    else:
        parser = StepStream()
        objs = parser.feed(text)
        offsets = [tok.count(text[:e]) for e in parser.ends]
        run = PlanRun.streaming(g.text, CATALOGUE, lambda: HELD)
        val = StreamValidator(g.text, CATALOGUE, HELD)
        launch = start_plan(loop, run, world.work(g), lambda: joiner(run))
        written = [0]

        def progress(tokens: int) -> None:
            while written[0] < len(objs) and offsets[written[0]] <= tokens:
                run.add(val.accept(objs[written[0]]))
                written[0] += 1
            launch()

        def planned() -> None:
            progress(1 << 30)
            run.seal(val.finish(text, plan.source))
            launch()

        loop.llm(planning[0], planning[1], planned, on_progress=progress)
    out.latency_ns = loop.run()
    out.llm_calls = loop.llm_calls
    return out


def run_react(g: Goal, world: World, tok: Tokenizer, cfg: EngineConfig, plan: Plan) -> Outcome:
    """One question by a ReAct agent doing the same steps, one model call each."""
    loop = _engine(cfg)
    out = Outcome()
    tools = "\n".join(f"- {s.signature()}: {s.description}" for s in CATALOGUE)
    scratch: list[str] = []
    results: dict[int, Any] = {}
    steps = list(plan.steps)

    def call(text: str, then: Callable[[], None]) -> None:
        req = (Message("system", REACT_SYSTEM + tools),
               Message("user", f"Question: {g.text}\n" + "\n".join(scratch)))
        p, o = count_chat(tok, req), tok.count(text)
        out.prompt_tokens += p
        out.output_tokens += o
        scratch.append(text)
        loop.llm(p, o, then)

    def step(i: int) -> None:
        if i == len(steps):
            out.answer = results[plan.answer]
            call(f"Thought: I now know the final answer\nFinal Answer: {out.answer}",
                 lambda: None)
            return
        s = steps[i]
        from aios.lib.cognitive.plan import substitute

        args = substitute(s.args, results)
        what = (f"the {args['attribute']} of {args['entity']}" if s.skill == "search"
                else f"to {args['op']} the values")
        action = f"Thought: I need {what}.\nAction: {s.skill}[{json.dumps(args)}]"

        def observe() -> None:
            w = world.work(g)(StartStep(s.id, s.skill, args))
            assert isinstance(w, ToolWork)

            def got() -> None:
                results[s.id] = w.result
                scratch.append(f"Observation: {json.dumps(w.result)}")
                step(i + 1)

            loop.after(w.latency_ns, got)

        call(action, observe)

    step(0)
    out.latency_ns = loop.run()
    out.llm_calls = loop.llm_calls
    return out


def tokenizer() -> tuple[Tokenizer, str]:
    try:
        from aios.lib.cognitive.tokenizer import GGUFTokenizer

        t = GGUFTokenizer.from_gguf()
        return t, t.name
    except (NoSuchObject, ImportError):
        return EstimateTokenizer(), "estimate (embedded model not installed)"


def _summary(pairs: list[tuple[Goal, Outcome, Outcome]]) -> dict[str, Any]:
    seq = [s for _, s, _ in pairs]
    pln = [p for _, _, p in pairs]
    seq_lat = statistics.fmean(o.latency_ns for o in seq) / 1e9
    pln_lat = statistics.fmean(o.latency_ns for o in pln) / 1e9
    return {
        "speedup": round(seq_lat / pln_lat, 3),
        "tokens_ratio": round(sum(o.tokens for o in pln) / sum(o.tokens for o in seq), 3),
        "sequential_latency_s_mean": round(seq_lat, 3),
        "planner_latency_s_mean": round(pln_lat, 3),
        "sequential_tokens": sum(o.tokens for o in seq),
        "planner_tokens": sum(o.tokens for o in pln),
        "sequential_llm_calls": sum(o.llm_calls for o in seq),
        "planner_llm_calls": sum(o.llm_calls for o in pln),
        "answers_agree": all(s.answer == p.answer for _, s, p in pairs),
    }


def run_scripted(goals: list[Goal], world: World, tok: Tokenizer, cfg: EngineConfig,
                 ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[Goal, Outcome, Outcome]]]:
    """(streamed planner, whole-plan planner, the streamed pairs)."""
    htn = HtnPlanner(lookup_methods(("search",)))
    mp = _model_prompt_builder()
    streamed, whole = [], []
    valid = 0
    for g in goals:
        plan = validate(htn.plan(g.text, CATALOGUE, HELD), CATALOGUE, HELD)
        text = plan_text(plan)
        proposed = parse_plan(json.loads(text), g.text, "scripted")
        valid += not check(proposed, CATALOGUE, HELD)
        req = mp.request(g.text, CATALOGUE)
        planning = (count_chat(tok, req.messages), tok.count(text))
        s = run_react(g, world, tok, cfg, plan)
        p_stream = run_planner(g, world, tok, cfg, plan, planning, text)
        p_whole = run_planner(g, world, tok, cfg, plan, planning)
        assert p_stream.answer == p_whole.answer == s.answer == world.truth(g), g
        streamed.append((g, s, p_stream))
        whole.append((g, s, p_whole))
    out = _summary(streamed)
    out["plan_valid_rate"] = round(valid / len(goals), 4)
    return out, _summary(whole), streamed


def _model_prompt_builder(driver: Any = None, max_steps: int = 8) -> ModelPlanner:
    return ModelPlanner(driver, max_steps=max_steps, examples=EXAMPLES, seed=1)


async def _model_plans(goals: list[Goal]) -> list[tuple[Goal, str, int, int, float]]:
    from aios.lib.llm.embedded import EmbeddedDriver

    d = EmbeddedDriver(slots=1, context_tokens=4096)
    out = []
    try:
        await d.start()
        for g in goals:
            mp = _model_prompt_builder(d, max_steps=len(g.entities) + 2)
            t0 = time.perf_counter()
            res = await d.chat(mp.request(g.text, CATALOGUE))
            out.append((g, res.text, res.usage.prompt_tokens, res.usage.completion_tokens,
                        time.perf_counter() - t0))
    finally:
        await d.aclose()
    return out


def run_model(goals: list[Goal], world: World, tok: Tokenizer,
              cfg: EngineConfig) -> dict[str, Any]:
    """The embedded model plans the questions for real; timing on the simulated engine."""
    htn = HtnPlanner(lookup_methods(("search",)))
    plans = asyncio.run(_model_plans(goals))
    valid = correct = 0
    pairs = []
    wall = []
    for g, text, ptok, otok, secs in plans:
        wall.append(secs)
        fallback = validate(htn.plan(g.text, CATALOGUE, HELD), CATALOGUE, HELD)
        plan = fallback
        try:
            proposed = parse_plan(json.loads(text), g.text, "model")
            ok = not check(proposed, CATALOGUE, HELD)
        except (ValueError, NoSuchObject, Exception):  # not JSON, not a plan
            ok = False
        if ok:
            valid += 1
            plan = validate(proposed, CATALOGUE, HELD)
            p = run_planner(g, world, tok, cfg, plan, (ptok, otok), text)  # streamed
        else:  # the fallback plan runs after the model's (wasted) planning call
            p = run_planner(g, world, tok, cfg, plan, (ptok, otok))
        if ok and p.answer == world.truth(g):
            correct += 1
        s = run_react(g, world, tok, cfg, fallback)
        pairs.append((g, s, p))
    out = _summary(pairs)
    del out["answers_agree"]
    out.update({
        "goals": len(goals),
        "plan_valid_rate": round(valid / len(goals), 4),
        "answer_correct_rate": round(correct / len(goals), 4),
        "fallback_rate": round(1 - valid / len(goals), 4),
        "wall_s_per_plan": round(statistics.fmean(wall), 2),
    })
    return out


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench planner")
    ap.add_argument("--goals", type=int, default=40)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--model-goals", type=int, default=6,
                    help="questions the embedded model plans for real (0: none)")
    a = ap.parse_args(argv)
    cfg = EngineConfig()
    tok, tok_name = tokenizer()
    world = World(a.seed)
    goals = make_goals(a.goals, a.seed)
    scripted, whole, pairs = run_scripted(goals, world, tok, cfg)
    by_k: dict[str, Any] = {}
    for k in sorted({len(g.entities) for g in goals}):
        sub = [x for x in pairs if len(x[0].entities) == k]
        s = _summary(sub)
        by_k[str(k)] = {"goals": len(sub), "speedup": s["speedup"],
                        "tokens_ratio": s["tokens_ratio"]}
    model: Mapping[str, Any] | None = None
    model_note = ""
    if a.model_goals > 0:
        try:
            model = run_model(goals[:a.model_goals], world, tok, cfg)
        except NoSuchObject as e:
            model_note = e.message
    out: dict[str, Any] = {
        "speedup_vs_sequential": scripted["speedup"],
        "tokens_ratio_vs_sequential": scripted["tokens_ratio"],
        "plan_valid_rate": model["plan_valid_rate"] if model else scripted["plan_valid_rate"],
        "plan_valid_rate_source": ("embedded SmolLM2-135M, first attempt" if model
                                   else "scripted plans (valid by construction)"),
        "plan_valid_rate_scripted": scripted["plan_valid_rate"],
        "speedup_vs_sequential_whole_plan": whole["speedup"],
        "planner_latency_s_mean_whole_plan": whole["planner_latency_s_mean"],
        "sequential_latency_s_mean": scripted["sequential_latency_s_mean"],
        "planner_latency_s_mean": scripted["planner_latency_s_mean"],
        "sequential_tokens": scripted["sequential_tokens"],
        "planner_tokens": scripted["planner_tokens"],
        "sequential_llm_calls": scripted["sequential_llm_calls"],
        "planner_llm_calls": scripted["planner_llm_calls"],
        "answers_agree": scripted["answers_agree"],
        "goals": len(goals),
        "by_lookups": by_k,
        "tokenizer": tok_name,
        "engine": {"slots": cfg.slots, "step_tokens": cfg.step_tokens,
                   "alpha_ms": cfg.alpha_ns / MS, "beta_us": cfg.beta_ns / 1000,
                   "gamma_ns": cfg.gamma_ns},
    }
    if model:
        out["plan_valid_rate_model"] = model["plan_valid_rate"]
        out["answer_correct_rate_model"] = model["answer_correct_rate"]
        out["speedup_vs_sequential_model_plans"] = model["speedup"]
        out["tokens_ratio_vs_sequential_model_plans"] = model["tokens_ratio"]
        out["model"] = dict(model)
    elif model_note:
        out["model"] = {"skipped": model_note}
    return out
