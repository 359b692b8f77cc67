"""Time Planetarium's reference equivalence check on PDDL pairs read from stdin (driver for the equivalence bench).

``bench/bench_equivalence.py --reference`` runs this file with the Python of a separate environment that holds
the reference implementation (``BatsResearch/planetarium``), so it imports only that and the standard library,
never map-agent. Each pair is decided by the reference's ``planetarium.evaluate`` with the solvability check off
(that check runs VAL and a planner, which is not what is compared), timed from PDDL text to verdict.

Input: ``{"warm_up": [reference, candidate], "cases": [{"texts": [[reference, candidate], ...],
"is_placeholder": bool}, ...]}``; each case lists one text pair per repeat. Output: ``{"installed_from": ...,
"results": [{"seconds": fastest repeat, "equivalent": bool}, ...]}``.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time

from planetarium import evaluate


def main() -> int:
    request = json.load(sys.stdin)
    evaluate(*request["warm_up"], check_solveable=False)  # builds the parsers once, as a long-lived user would
    results = []
    for case in request["cases"]:
        best = float("inf")
        for reference, candidate in case["texts"]:  # the same pair under another problem name each time
            start = time.perf_counter()
            _, _, equivalent = evaluate(reference, candidate, is_placeholder=case["is_placeholder"],
                                        check_solveable=False)
            best = min(best, time.perf_counter() - start)
        results.append({"seconds": best, "equivalent": equivalent})
    origin = importlib.metadata.distribution("planetarium").read_text("direct_url.json")
    json.dump({"installed_from": json.loads(origin) if origin else None, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
