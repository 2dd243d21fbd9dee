"""Load and soak: a real server on the sample bundle under 32 concurrent clients for 60 s.

The server (``uvicorn api.app:create_app --factory``, real MiniLM) runs in one process, the
clients (asyncio + httpx, one connection each) in another, both on loopback. The mix: 60 %
``/recommend`` (a random history of 1-20 sample movies; a third of them with an interests text
from a pool of 40), 25 % ``/search`` (a text from the same pool), 15 % ``/items/{id}/similar``.
This process samples the server's resident memory every second.

Printed: requests, errors (any non-200 or transport error), throughput, p50/p99 latency, and the
mean resident memory of the first and the last 10 s, with the growth between them (goal < 5 %).

Usage: ``python bench/soak.py [--clients 32] [--seconds 60] [--index indexes/movielens]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "space adventure",
    "heist gone wrong",
    "coming of age in a small town",
    "romantic comedy",
    "haunted house",
    "courtroom drama",
    "talking animals",
    "time travel paradox",
    "world war two",
    "superhero origin",
    "zombie apocalypse",
    "road trip with friends",
    "artificial intelligence",
    "high school musical",
    "serial killer detective",
    "pirates and treasure",
    "martial arts revenge",
    "political conspiracy",
    "dinosaurs",
    "a dog and his boy",
    "sports underdog",
    "wedding disaster",
    "alien invasion",
    "cold war spies",
    "ballet dancer",
    "mountain climbing",
    "shark attack",
    "vampires in love",
    "family christmas",
    "bank robbery",
    "samurai honour",
    "jazz musician",
    "boxing champion",
    "survival on an island",
    "mafia family",
    "robot uprising",
    "fairy tale princess",
    "cyberpunk city",
    "western gunfight",
    "submarine thriller",
]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def client_main(url: str, clients: int, seconds: float, ids: list[str]) -> dict[str, object]:
    rng = random.Random(0)
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            roll = rng.random()
            start = time.perf_counter()
            try:
                if roll < 0.6:
                    body: dict[str, object] = {
                        "history": rng.sample(ids, rng.randint(1, 20)),
                        "k": 10,
                    }
                    if rng.random() < 1 / 3:
                        body["interests"] = rng.choice(TEXTS)
                    response = await client.post("/recommend", json=body)
                elif roll < 0.85:
                    response = await client.post("/search", json={"text": rng.choice(TEXTS)})
                else:
                    response = await client.get(f"/items/{rng.choice(ids)}/similar")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")

    limits = httpx.Limits(max_connections=1)
    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            client = httpx.AsyncClient(base_url=url, timeout=60, limits=limits)
            group.create_task(one(client))
    return {"latencies": latencies, "errors": errors}


def run_clients(url: str, clients: int, seconds: float, ids_file: str, out: str) -> None:
    ids = json.loads(Path(ids_file).read_text())
    result = asyncio.run(client_main(url, clients, seconds, ids))
    # A file, not stdout: a full pipe nobody reads while sampling memory would block the clients.
    Path(out).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--index", default=str(ROOT / "indexes" / "movielens"))
    parser.add_argument("--client-of", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_of:
        url, ids_file, out = args.client_of
        run_clients(url, args.clients, args.seconds, ids_file, out)
        return

    from engine import Bundle

    ids = [str(i) for i in Bundle.load(args.index, verify=False).ids]
    ids_file = ROOT / "indexes" / ".soak-ids.json"
    ids_file.write_text(json.dumps(ids))
    result_file = ROOT / "indexes" / ".soak-result.json"
    sys.path.insert(0, str(ROOT))
    from bench.http_bench import serve  # one way to start and await a server for all benches

    env = {"VECREC_INDEX": args.index, "VECREC_LOG_LEVEL": "warning"}
    with serve("api.app:create_app", env, workers=1) as (url, pid):
        start_rss = rss_mib(pid)
        load = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--clients",
                str(args.clients),
                "--seconds",
                str(args.seconds),
                "--client-of",
                url,
                str(ids_file),
                str(result_file),
            ],
        )
        samples: list[tuple[float, float]] = []
        began = time.monotonic()
        while load.poll() is None:
            samples.append((time.monotonic() - began, rss_mib(pid)))
            time.sleep(1.0)
        out = result_file.read_text()
    result = json.loads(out)
    latencies = np.array(result["latencies"])
    errors = result["errors"]
    first = [m for t, m in samples if t < 10]
    last = [m for t, m in samples if t >= args.seconds - 10]
    growth = (statistics.mean(last) / statistics.mean(first) - 1) * 100
    print(f"clients {args.clients}, {args.seconds:g} s, index {args.index}")
    print(f"requests {len(latencies) + len(errors)}, errors {len(errors)}")
    print(f"throughput {len(latencies) / args.seconds:.1f} req/s")
    print(
        f"latency p50 {1000 * np.median(latencies):.1f} ms, p99 "
        f"{1000 * np.quantile(latencies, 0.99):.1f} ms, max {1000 * latencies.max():.1f} ms"
    )
    print(
        f"server RSS: {start_rss:.0f} MiB idle, {statistics.mean(first):.0f} MiB first 10 s, "
        f"{statistics.mean(last):.0f} MiB last 10 s: growth {growth:+.2f} %"
    )
    if errors:
        print("first errors:", errors[:5])


if __name__ == "__main__":
    main()
