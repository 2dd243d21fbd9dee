"""Latency of the query strategies and the re-ranking pipeline at k = 10, in process.

Baseline (same run, same users): plain retrieval, the ``mean`` strategy with no re-ranking.
"Full pipeline": exact re-score + popularity boost + MMR + genre crowding + explanations.

Usage: ``python bench/pipeline_latency.py [--index indexes/movielens] [--users 1000]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.recommend_latency import users  # noqa: E402
from engine import (  # noqa: E402
    Boost,
    Crowding,
    HistoryEvent,
    QueryOptions,
    Recommender,
    RerankConfig,
)

FULL = RerankConfig(
    exact=True,
    boosts=(Boost("popularity", 1.0),),
    max_boost=1.5,
    mmr_lambda=0.7,
    crowding=Crowding("genres", 3),
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", default=str(ROOT / "indexes" / "movielens"))
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    rec = Recommender.open(args.index)
    histories = [
        [HistoryEvent(h["item_id"], h["weight"], h["timestamp"]) for h in u]
        for u in users(args.users)
    ]
    cases = {
        "plain retrieval (mean, no re-ranking)": QueryOptions(rerank=RerankConfig(exact=False)),
        "mean + exact re-score (default)": QueryOptions(),
        "full pipeline (mean)": QueryOptions(rerank=FULL, explain=True),
        "best_score": QueryOptions(strategy="best_score"),
        "best_score + full pipeline": QueryOptions(
            strategy="best_score", rerank=FULL, explain=True
        ),
        "multi_interest (m=3)": QueryOptions(strategy="multi_interest"),
        "multi_interest + full pipeline": QueryOptions(
            strategy="multi_interest", rerank=FULL, explain=True
        ),
    }
    for history in histories[:50]:  # warm caches (boost ranks, field values)
        for options in cases.values():
            rec.recommend(history, k=10, options=options)
    p50: dict[str, float] = {}
    print(f"{len(histories)} users, k=10, index {rec.bundle.path.name} ({len(rec.bundle)} items)")
    # Cases take turns on each user, so background load falls on all of them alike.
    times: dict[str, list[float]] = {name: [] for name in cases}
    for history in histories:
        for name, options in cases.items():
            start = time.perf_counter()
            rec.recommend(history, k=10, options=options)
            times[name].append(time.perf_counter() - start)
    for name in cases:
        ms = np.array(times[name]) * 1000
        p50[name] = float(np.percentile(ms, 50))
        print(f"  {name:<40} p50 {p50[name]:6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms")
    base = p50["plain retrieval (mean, no re-ranking)"]
    for name, value in p50.items():
        print(f"  {name:<40} adds {value - base:+6.2f} ms p50 over plain retrieval")


if __name__ == "__main__":
    main()
