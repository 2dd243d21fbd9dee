"""``/recommend`` latency: sequential requests to a real uvicorn serving a bundle.

Baselines measured in the same run, on the same users:

* ``engine``: ``Recommender.recommend`` in this process (the engine without HTTP);
* ``bare faiss``: ``index.search`` of the same user vectors, k + len(history) (what a hand-written
  service would do before dropping seen items).

Users are real MovieLens users: each request carries 5-30 of one user's ratings with timestamps.

Usage: ``python bench/recommend_latency.py [--index indexes/movielens] [--requests 1000]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import HistoryEvent, Recommender  # noqa: E402
from engine.usermodel import build_query  # noqa: E402
from indexer.sample import SAMPLE_DIR  # noqa: E402


def users(n: int, seed: int = 0) -> list[list[dict]]:
    ratings = pd.read_csv(SAMPLE_DIR / "ratings.csv", dtype={"movieId": str})
    rng = np.random.default_rng(seed)
    groups = [g for _, g in ratings.groupby("userId")]
    out = []
    for _ in range(n):
        g = groups[rng.integers(len(groups))]
        take = g.sample(
            min(len(g), int(rng.integers(5, 31))), random_state=int(rng.integers(1 << 31))
        )
        out.append(
            [
                {"item_id": r.movieId, "weight": float(r.rating), "timestamp": float(r.timestamp)}
                for r in take.itertuples()
            ]
        )
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", default=str(ROOT / "indexes" / "movielens"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    histories = users(args.requests)

    port = free_port()
    env = {**os.environ, "VECREC_INDEX": args.index}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(600):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            for history in histories[:20]:  # warm-up
                client.post("/recommend", json={"history": history, "k": args.k})
            http_times = []
            for history in histories:
                start = time.perf_counter()
                response = client.post("/recommend", json={"history": history, "k": args.k})
                http_times.append(time.perf_counter() - start)
                assert response.status_code == 200 and len(response.json()["items"]) == args.k
            interest_times = []
            for history in histories[:200]:
                start = time.perf_counter()
                response = client.post(
                    "/recommend",
                    json={
                        "history": history,
                        "interests": "space adventure with robots",
                        "k": args.k,
                    },
                )
                interest_times.append(time.perf_counter() - start)
                assert response.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)

    rec = Recommender.open(args.index)
    events = [
        [HistoryEvent(h["item_id"], h["weight"], h["timestamp"]) for h in u] for u in histories
    ]
    engine_times = []
    for history in events:
        start = time.perf_counter()
        rec.recommend(history, k=args.k)
        engine_times.append(time.perf_counter() - start)

    bundle = rec.bundle
    queries = []
    for history in events:
        rows = [bundle.row_of[e.item_id] for e in history if e.item_id in bundle.row_of]
        q = build_query(
            np.asarray(bundle.vectors[rows]),
            [e.weight for e in history if e.item_id in bundle.row_of],
            [e.timestamp for e in history if e.item_id in bundle.row_of],
            None,
            rec.config.user_model,
        )
        queries.append((q, len(rows)))
    bare_times = []
    for q, seen in queries:
        start = time.perf_counter()
        bundle.index.search(q[None, :], args.k + seen)
        bare_times.append(time.perf_counter() - start)

    http, engine, bare, interests = map(
        percentiles, (http_times, engine_times, bare_times, interest_times)
    )
    print(
        f"index {bundle.path} ({len(bundle)} items, {bundle.manifest.index.factory}), "
        f"{args.requests} sequential requests, k={args.k}"
    )
    for name, figures in (
        ("HTTP /recommend", http),
        ("HTTP /recommend + interests (200)", interests),
        ("engine recommend()", engine),
        ("bare faiss search", bare),
    ):
        print(
            f"  {name:<36} p50 {figures['p50']:7.2f} ms  p99 {figures['p99']:7.2f} ms  "
            f"mean {figures['mean']:7.2f} ms"
        )
    print(
        f"  ratio HTTP/engine p50 {http['p50'] / engine['p50']:.2f}, engine/bare p50 "
        f"{engine['p50'] / bare['p50']:.2f}, throughput {1000 / http['mean']:.0f} req/s sequential"
    )


if __name__ == "__main__":
    main()
