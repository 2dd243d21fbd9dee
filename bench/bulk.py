"""Bulk retrieval throughput and peak memory, against a bare batched FAISS search of the same
user vectors, in the same run (issue 6).

Phases, each in a fresh child process so its peak resident memory is its own:

* ``bulk``: :func:`engine.bulk.run_bulk` over the users file (reading, user model, strategy,
  one batched search per chunk, re-ranking, Parquet parts). Every query matrix it searches is
  also appended to a scratch file, and the time spent in that search is summed.
* ``bare``: ``faiss.Index.search`` of those same query vectors, chunk by chunk, at the same k:
  what a hand-written job that already had the users' vectors would spend.
* ``ray`` (``--ray``): the same job on a local Ray cluster of ``--workers`` actors; its parts are
  compared with the local engine's, row for row.
* ``resume`` (``--resume-check``): ``vecrec bulk`` killed by SIGKILL halfway, rerun with
  ``--resume``; the parts must equal the uninterrupted run's and at most one part be redone.

Usage: ``python bench/bulk.py --users 100000 [--strategy mean] [--mode content] [--k 100] [--ray] [--resume-check] [--per-user]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _request(strategy: str, k: int, mode: str | None) -> Any:
    from engine import QueryOptions
    from engine.bulk import BulkRequest

    return BulkRequest(k=k, options=QueryOptions(strategy=strategy, mode=mode))


def _bulk(args: dict[str, Any], out: mp.Queue) -> None:
    import numpy as np

    import engine.bulk.batch as batch_module
    import engine.bulk.fast as fast_module
    from api.cli_bulk import open_recommender
    from engine.bulk import UsersSpec, run_bulk

    if args.get("per_user"):
        # The per-user pipeline for every user: the chunk-wide path's baseline.
        original_init = batch_module.BatchRecommender.__init__

        def per_user_init(self: Any, *a: Any, **kw: Any) -> None:
            original_init(self, *a, **kw)
            self.chunk_request = None

        batch_module.BatchRecommender.__init__ = per_user_init  # type: ignore[method-assign]

    search_seconds = 0.0
    queries = 0
    with open(args["vectors"], "wb") as sink:

        def recording(search: Any) -> Any:
            """``search`` (its queries are the second argument), timed and its queries kept."""

            def recorded(first: Any, q: Any, *rest: Any) -> Any:
                nonlocal search_seconds, queries
                start = time.perf_counter()
                found = search(first, q, *rest)
                search_seconds += time.perf_counter() - start
                np.ascontiguousarray(q, dtype=np.float32).tofile(sink)
                queries += len(q)
                return found

            return recorded

        # The per-user path's batched search and the chunk-wide path's scan.
        batch_module.batch_search = recording(batch_module.batch_search)  # type: ignore[assignment]
        fast_module.masked_top_k = recording(fast_module.masked_top_k)  # type: ignore[assignment]
        rec = open_recommender(Path(args["index"]), None)
        start = time.perf_counter()
        report = run_bulk(
            rec,
            UsersSpec(Path(args["users_path"])),
            Path(args["out"]),
            _request(args["strategy"], args["k"], args["mode"]),
            chunk_size=args["chunk"],
        )
        seconds = time.perf_counter() - start
    out.put(
        {
            "seconds": seconds,
            "search_seconds": search_seconds,
            "queries": queries,
            "summary": report.summary(),
            "peak_rss_mib": _peak_mib(),
            "dimension": rec.bundle.dimension,
        }
    )


def _bare(args: dict[str, Any], out: mp.Queue) -> None:
    import faiss
    import numpy as np

    from engine.bundle import Bundle

    bundle = Bundle.load(args["index"], mmap=False)
    vectors = np.memmap(args["vectors"], dtype=np.float32, mode="r").reshape(-1, bundle.dimension)
    # As many queries per call as the bulk job searched per chunk.
    block = args["chunk"] * max(1, round(len(vectors) / max(args["n_users"], 1)))
    start = time.perf_counter()
    for i in range(0, len(vectors), block):
        bundle.index.search(np.ascontiguousarray(vectors[i : i + block]), args["k"])
    seconds = time.perf_counter() - start
    out.put({"seconds": seconds, "queries": len(vectors), "peak_rss_mib": _peak_mib()})
    del faiss


def _ray(args: dict[str, Any], out: mp.Queue) -> None:
    from engine.bulk import UsersSpec
    from engine.bulk.ray_job import run_bulk_ray

    start = time.perf_counter()
    report = run_bulk_ray(
        Path(args["index"]),
        UsersSpec(Path(args["users_path"])),
        Path(args["ray_out"]),
        _request(args["strategy"], args["k"], args["mode"]),
        chunk_size=args["chunk"],
        workers=args["workers"],
    )
    out.put(
        {
            "seconds": time.perf_counter() - start,
            "summary": report.summary(),
            "peak_rss_mib_driver": _peak_mib(),
        }
    )


def _child(target: Any, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    process = ctx.Process(target=target, args=(args, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception as exc:  # queue.Empty: still working, unless the child died
            if not process.is_alive():
                raise SystemExit(
                    f"{target.__name__} phase died (exit code {process.exitcode})"
                ) from exc
    process.join()
    return dict(result)


def same_parts(a: Path, b: Path) -> bool:
    import pandas as pd
    import pyarrow.parquet as pq

    def read(d: Path) -> Any:
        return pd.concat(
            [pq.read_table(p).to_pandas() for p in sorted(d.glob("part-*.parquet"))],
            ignore_index=True,
        )

    return bool(read(a).equals(read(b)))


def resume_check(args: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL ``vecrec bulk`` once half the parts exist, then ``--resume``."""
    out = Path(args["scratch"]) / "killed"
    command = [
        sys.executable, "-m", "api.cli", "bulk", "--index", args["index"], "--users",
        args["users_path"], "--out", str(out), "-k", str(args["k"]), "--strategy", args["strategy"],
        "--chunk-size", str(args["chunk"]), "--quiet", "--json",
    ] + (["--mode", args["mode"]] if args["mode"] else [])  # fmt: skip
    parts = -(-args["n_users"] // args["chunk"])
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    while len(list(out.glob("part-*.parquet"))) < parts // 2:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    in_flight = len(list(out.glob(".tmp-part-*")))
    start = time.perf_counter()
    done = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, check=True)
    summary = json.loads(done.stdout)
    untouched = all((out / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())
    return {
        "parts": parts,
        "parts_at_kill": len(kept),
        "temporaries_at_kill": in_flight,
        "parts_written_on_resume": summary["parts_written"],
        "redone_parts": summary["parts_written"] - (parts - len(kept)),
        "kept_parts_untouched": untouched,
        "resume_seconds": round(time.perf_counter() - start, 1),
        "equal_to_uninterrupted": same_parts(out, Path(args["out"])),
    }


def online_check(args: dict[str, Any], n: int) -> dict[str, Any]:
    """``n`` users of the local output, spread over the parts, against ``Recommender.recommend``:
    identical lists, or near-tied neighbours traded (``tests/test_bulk.py``'s rule)."""
    import numpy as np
    import pyarrow.parquet as pq

    from engine import QueryOptions, Recommender
    from engine.bulk import UsersSpec, iter_users
    from tests.test_bulk import assert_same_answers

    rec = Recommender.open(args["index"])
    options = QueryOptions(strategy=args["strategy"], mode=args["mode"])
    parts = sorted(Path(args["out"]).glob("part-*.parquet"))
    every = max(1, len(parts) // 10)
    per_part = max(1, n // 10)
    checked = identical = moved = 0
    for i, batch in enumerate(iter_users(UsersSpec(Path(args["users_path"])), args["chunk"])):
        if i % every or checked >= n:
            continue
        frame = pq.read_table(parts[i]).to_pandas()
        for u in range(0, len(batch), max(1, len(batch) // per_part))[:per_part]:
            online = rec.recommend(batch.history(u), None, args["k"], options=options)
            mine = frame[frame["user_id"] == batch.user_ids[u]]
            m = assert_same_answers(
                mine["item_id"].tolist(),
                mine["score"].to_numpy(np.float64),
                online.ids,
                np.array([item.score for item in online.items]),
            )
            checked += 1
            identical += m == 0
            moved += m
    return {"users": checked, "identical": identical, "places_moved_by_near_ties": moved}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(ROOT / "indexes" / "movielens"))
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--users-file", default=None, help="reuse a synthetic users file")
    parser.add_argument("--strategy", default="mean")
    parser.add_argument(
        "--mode",
        default="content",
        help="signals, as POST /recommend's mode (default content: the text vectors the bare "
        "search uses; 'auto' leaves it to the index, hybrid on one with CF vectors)",
    )
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--scratch", default=None, help="work directory (default: a temp dir)")
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resume-check", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=1, help="bulk/bare pairs to run (the last is reported)"
    )
    parser.add_argument(
        "--per-user", action="store_true", help="also run the per-user path, chunk-wide path off"
    )
    parser.add_argument(
        "--check-online", type=int, default=0, metavar="N", help="compare N users with online"
    )
    a = parser.parse_args()
    # Run as a script, bench/ is first on the path, where bench/http.py would shadow the standard
    # library's http (which Ray imports); the children inherit the path.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(ROOT))  # bench.synthetic_users, tests.test_bulk
    scratch = Path(a.scratch or tempfile.mkdtemp(prefix="vecrec-bulk-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    users = Path(a.users_file) if a.users_file else scratch / f"users-{a.users}.parquet"
    if not users.exists():
        from bench.synthetic_users import write_users
        from engine.bundle import Bundle

        start = time.perf_counter()
        write_users(Bundle.load(a.index, verify=False), a.users, users)
        print(f"generated {a.users:,d} users in {time.perf_counter() - start:.0f} s", flush=True)
    args = {
        "index": a.index, "users_path": str(users), "n_users": a.users, "strategy": a.strategy,
        "mode": None if a.mode == "auto" else a.mode,
        "k": a.k, "chunk": a.chunk_size, "out": str(scratch / "out"),
        "ray_out": str(scratch / "ray-out"), "vectors": str(scratch / "queries.f32"),
        "workers": a.workers, "scratch": str(scratch),
    }  # fmt: skip
    for name in ("out", "ray_out"):
        shutil.rmtree(args[name], ignore_errors=True)
    shutil.rmtree(scratch / "killed", ignore_errors=True)
    result: dict[str, Any] = {"users": a.users, "strategy": a.strategy, "mode": a.mode, "k": a.k}
    ratios: list[float] = []
    pairs: list[list[float]] = []  # seconds of (bulk, bare), pair by pair
    for _ in range(a.repeat):
        # Each pair runs one phase right after the other: this machine's speed drifts by up to
        # 20 % over minutes, which a ratio of neighbours cancels.
        shutil.rmtree(args["out"], ignore_errors=True)
        result["bulk"] = _child(_bulk, args)
        result["bare"] = _child(_bare, args)
        ratios.append(result["bare"]["seconds"] / result["bulk"]["seconds"])
        pairs.append([round(result[phase]["seconds"], 1) for phase in ("bulk", "bare")])
    n = result["bulk"]["summary"]["users"]
    bulk_rate = n / result["bulk"]["seconds"]
    bare_rate = n / result["bare"]["seconds"]
    result["users_per_second"] = {"bulk": round(bulk_rate), "bare_faiss": round(bare_rate)}
    result["throughput_ratio"] = round(bulk_rate / bare_rate, 3)
    if a.repeat > 1:
        result["paired_ratios"] = [round(r, 3) for r in ratios]
        result["paired_seconds_bulk_bare"] = pairs
        result["median_paired_ratio"] = round(sorted(ratios)[len(ratios) // 2], 3)
    result["search_share_of_bulk"] = round(
        result["bulk"]["search_seconds"] / result["bulk"]["seconds"], 3
    )
    if a.per_user:
        # Same job with the chunk-wide path off: what engine/bulk/fast.py gains.
        slow = {**args, "per_user": True, "out": str(scratch / "out-per-user"),
                "vectors": str(scratch / "queries-per-user.f32")}  # fmt: skip
        shutil.rmtree(slow["out"], ignore_errors=True)
        result["per_user"] = _child(_bulk, slow)
        Path(slow["vectors"]).unlink(missing_ok=True)
        per_user_rate = n / result["per_user"]["seconds"]
        result["users_per_second"]["per_user"] = round(per_user_rate)
        result["chunk_wide_over_per_user"] = round(bulk_rate / per_user_rate, 2)
        result["per_user_equal_to_chunk_wide"] = same_parts(Path(slow["out"]), Path(args["out"]))
    print(json.dumps(result, indent=2), flush=True)
    Path(args["vectors"]).unlink(missing_ok=True)
    if a.ray:
        ray = _child(_ray, args)
        ray["wall_time_ratio_ray_over_local"] = round(ray["seconds"] / result["bulk"]["seconds"], 3)
        ray["equal_to_local"] = same_parts(Path(args["ray_out"]), Path(args["out"]))
        print(json.dumps({"ray": ray}, indent=2), flush=True)
    if a.check_online:
        print(json.dumps({"online": online_check(args, a.check_online)}, indent=2), flush=True)
    if a.resume_check:
        print(json.dumps({"resume": resume_check(args)}, indent=2), flush=True)


if __name__ == "__main__":
    main()
