"""The learned critic on Tower of Hanoi: ranking quality, then end-to-end MAP with it as the Evaluator.

Ranking (``critic_train.evaluate_hanoi``): top-1 of the action with the highest Q(s, a, g) among the legal moves
(chance: a random legal move) and Spearman's rho of -V(s, g) against the true distance, on three-disk training
goals, three-disk held-out goals (never used as goals in training) and four-disk states (never seen).

End to end: MAP with every module but the Evaluator as its symbolic oracle, and the Evaluator learned, oracle
(the exact distance: the baseline it is compared with) or -- on the first ``--llm-problems`` problems of each
split -- the embedded SmolLM2 model's LLM Evaluator (paper prompts, llama.cpp, one thread). The paper's runs per
split (test3: 5, test4: 1) unless ``--runs``.

The natural-language critic alone (``--actor-problems``): the embedded model's Actor proposes, reads the critic's
notes on its proposals, and proposes again; both rounds are scored against the ground truth.

    python bench/bench_critic.py --llm-problems 2
    python bench/bench_critic.py --splits --no-ranking --actor-problems 24
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from map_agent.agent import MAPAgent
from map_agent.config import MAPConfig
from map_agent.learned.critic import critic_for
from map_agent.learned.critic_train import evaluate_hanoi
from map_agent.llm import make_chat_model
from map_agent.modules import build_modules
from map_agent.modules.schemas import ActorInput
from map_agent.task import MODULES, get_task


def end_to_end(split: str, evaluator: str, runs: int, limit: int | None, threads: int) -> dict:
    task = get_task("hanoi")
    problems = task.problems(split)[:limit]
    modules = {**dict.fromkeys(MODULES, "oracle"), "Evaluator": evaluator}
    backend = "local" if evaluator == "llm" else "oracle"
    options = {"threads": threads, "cache": False} if backend == "local" else {}
    solved = invalid = actions = evaluator_failures = 0
    started = time.perf_counter()
    for run in range(runs):
        for problem in problems:
            result = MAPAgent(problem, backend=backend, config=MAPConfig(modules=modules, seed=run),
                              **options).plan()
            solved += result.solved
            invalid += result.invalid_moves
            actions += len(result.actions)
            evaluator_failures += sum(1 for f in result.failures if f.module == "Evaluator")
    n = runs * len(problems)
    return {"split": split, "evaluator": evaluator, "problems": len(problems), "runs": runs,
            "solved_pct": round(100 * solved / n, 1), "invalid_pct": round(100 * invalid / max(actions, 1), 1),
            "mean_actions": round(actions / n, 2), "evaluator_failures": evaluator_failures,
            "seconds": round(time.perf_counter() - started, 1)}


def actor_with_critique(k: int, threads: int) -> dict:
    """The natural-language critic alone: the embedded model's LLM Actor (paper prompts) proposes B = 2 moves from
    the first ``k`` test3 starts, the critic comments, and it proposes again; the proposals of both rounds are
    scored against the ground truth (legal; optimal = one step nearer the goal)."""
    task, critic = get_task("hanoi"), critic_for("hanoi")
    llm = make_chat_model("local", threads=threads, cache=False)
    tally = {r: {"proposals": 0, "legal": 0, "optimal": 0, "first_optimal": 0} for r in ("draft", "revised")}
    started = time.perf_counter()
    problems = task.problems("test3")[:k]
    for problem in problems:
        actor = build_modules(task, problem, MAPConfig().resolve(task, problem), llm)["Actor"]
        state, goal = task.start(problem), task.goal(problem)
        legal = task.legal_actions(state, problem)
        d = task.distance(state, goal, problem)
        inp = ActorInput(state=state, goal=goal, n_actions=2)
        for round_ in ("draft", "revised"):
            result = actor(inp)
            actions = result.output.actions if result.ok else []
            good = [a in legal and task.distance(task.apply(state, a, problem), goal, problem) == d - 1
                    for a in actions]
            t = tally[round_]
            t["proposals"] += len(actions)
            t["legal"] += sum(a in legal for a in actions)
            t["optimal"] += sum(good)
            t["first_optimal"] += bool(good and good[0])
            inp = inp.model_copy(update={"critique": critic.critique(state, goal, actions)})
    return {"problems": len(problems), **tally, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--splits", nargs="*", default=["test3", "test4"])
    p.add_argument("--runs", type=int, help="runs per problem (default: the paper's per split)")
    p.add_argument("--llm-problems", type=int, default=0, help="also the embedded LLM Evaluator on this many")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads (embeddings and the LLM)")
    p.add_argument("--no-ranking", action="store_true")
    p.add_argument("--actor-problems", type=int, default=0,
                   help="also the LLM Actor's proposals before and after the critique on this many test3 starts")
    args = p.parse_args()
    task = get_task("hanoi")
    critic = critic_for("hanoi")
    started = time.perf_counter()
    out: dict = {"critic": {k: critic.card[k] for k in ("features", "embedding", "data", "config", "seconds", "machine")
                            if k in critic.card},
                 "baseline": "the oracle Evaluator (exact distance); all other modules oracles in every row"}
    if not args.no_ranking:
        out["ranking"] = evaluate_hanoi(critic, task, critic.card["data"]["heldout_goals"])
    rows = []
    for split in args.splits:
        runs = args.runs or task.default_runs(split)
        rows += [end_to_end(split, ev, runs, None, args.threads) for ev in ("learned", "oracle")]
        if args.llm_problems:  # the LLM Evaluator is slow on a CPU: a few problems, with the others on the same
            rows += [end_to_end(split, ev, 1, args.llm_problems, args.threads) for ev in ("llm", "learned", "oracle")]
    out["end_to_end"] = rows
    if args.actor_problems:
        out["actor_with_critique"] = actor_with_critique(args.actor_problems, args.threads)
    out["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                      "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
