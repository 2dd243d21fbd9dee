"""Cold build against an incremental rebuild of the full sample catalogue, with the real model.

1. cold: ``build`` of the whole MovieLens sample with an empty embedding cache;
2. rebuilds (``--rebuilds``, 3; the median counts): each time the titles of another
   ``--changed`` (1 %) of the movies are modified in a temporary copy of ``movies.csv`` and the
   index is built again: only the changed texts are embedded;
3. for reference, the same kind of rebuild (another 1 % changed) as a fresh ``vecrec index build``
   process, which also pays Python start-up, imports and the model load.

Both in-process builds run in this one process with ``sentence_transformers`` imported
beforehand, so neither pays the imports; each loads the model itself, as a build does.

Usage: ``python bench/incremental_build.py [--changed 0.01] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine import Bundle
from engine.embedder import SentenceTransformerEmbedder
from indexer.build import BuildConfig, BuildReport, build
from indexer.sample import SAMPLE_DIR, SAMPLE_TEMPLATE, sample_config


def change_titles(catalog: Path, fraction: float, rng: np.random.Generator) -> list[str]:
    """Append a marker to the titles of ``fraction`` of the movies; returns their ids."""
    movies = pd.read_csv(catalog, dtype={"movieId": str})
    rows = rng.choice(len(movies), size=max(1, round(fraction * len(movies))), replace=False)
    movies.loc[rows, "title"] = movies.loc[rows, "title"] + f" (remastered {rng.integers(1e6)})"
    movies.to_csv(catalog, index=False)
    return movies.loc[rows, "movieId"].tolist()


def timed_build(config: BuildConfig) -> tuple[float, float, BuildReport]:
    """Wall and CPU seconds (all threads of this process) of one build, and its report.

    CPU time is reported too because it is what other processes on a shared machine inflate
    least.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    report = build(config)
    return time.perf_counter() - wall, time.process_time() - cpu, report


def cli_rebuild(work: Path, catalog: Path) -> tuple[float, dict]:
    command = [
        str(Path(sys.executable).parent / "vecrec"), "--indexes-dir", str(work / "indexes"),
        "index", "build", str(catalog), "--name", "movielens", "--id-column", "movieId",
        "--text", SAMPLE_TEMPLATE, "--list-column", "genres=|", "--metadata", "title,genres",
        "--join", f"tags={SAMPLE_DIR / 'tags.csv'}:movieId:tag",
        "--interactions", str(SAMPLE_DIR / "ratings.csv"), "--user-column", "userId",
        "--item-column", "movieId", "--quiet", "--json",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def check_rebuild(before: Bundle, after: Bundle, changed: list[str]) -> float:
    """The rebuild must equal a full re-embedding: unchanged rows bit for bit (they are the
    previous build's vectors), changed rows as the model embeds them now. Returns the largest
    difference on the changed rows."""
    rows = [after.row_of[i] for i in changed]
    unchanged = np.setdiff1d(np.arange(len(after)), rows)
    assert np.array_equal(after.vectors[unchanged], before.vectors[unchanged])
    fresh = SentenceTransformerEmbedder().embed(after.items["text"].iloc[rows].tolist())
    max_diff = float(np.abs(after.vectors[rows] - fresh).max())
    assert max_diff < 1e-4, max_diff
    return max_diff


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of movies changed")
    parser.add_argument("--rebuilds", type=int, default=3, help="rebuilds (the median counts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cli", action="store_true", help="skip the fresh-process rebuild")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    work = Path(tempfile.mkdtemp(prefix="vecrec-incremental-"))
    catalog = work / "movies.csv"
    shutil.copy(SAMPLE_DIR / "movies.csv", catalog)
    config = sample_config(work / "indexes")
    config = replace(config, catalog=replace(config.catalog, path=catalog), progress=False)
    import sentence_transformers  # noqa: F401  (imports are not what this measures)

    load = [os.getloadavg()[0]]
    cold_s, cold_cpu, cold = timed_build(config)
    load.append(os.getloadavg()[0])
    previous, rebuilds = Bundle.load(cold.path), []
    for _ in range(args.rebuilds):
        # Each rebuild changes another 1 %: only those are new to the cache.
        changed = change_titles(catalog, args.changed, rng)
        wall, cpu, report = timed_build(config)
        load.append(os.getloadavg()[0])
        current = Bundle.load(report.path)
        rebuilds.append(
            {
                "seconds": wall,
                "cpu_seconds": cpu,
                "phases": report.seconds,
                "changed": len(changed),
                "embedded": report.embedded,
                "cached": report.cached,
                "max_abs_diff_changed_rows": check_rebuild(previous, current, changed),
            }
        )
        previous = current
    warm_s = float(np.median([r["seconds"] for r in rebuilds]))
    warm_cpu = float(np.median([r["cpu_seconds"] for r in rebuilds]))

    result = {
        "items": cold.manifest.item_count,
        "load_average_1min": load,
        "cold": {
            "seconds": cold_s,
            "cpu_seconds": cold_cpu,
            "phases": cold.seconds,
            "embedded": cold.embedded,
        },
        "rebuilds": rebuilds,
        "median_rebuild_seconds": warm_s,
        "ratio": cold_s / warm_s,
        "cpu_ratio": cold_cpu / warm_cpu,
    }
    if not args.no_cli:
        change_titles(catalog, args.changed, rng)
        cli_s, cli_report = cli_rebuild(work, catalog)
        result["cli_rebuild"] = {
            "seconds": cli_s,
            "phases": cli_report["seconds"],
            "embedded": cli_report["embedded"],
            "cached": cli_report["cached"],
        }
    print(json.dumps(result, indent=2))
    times = ", ".join(f"{r['seconds']:.2f}" for r in rebuilds)
    print(
        f"items {result['items']}: cold build {cold_s:.1f} s (embedded {cold.embedded}); "
        f"rebuilds with {rebuilds[0]['changed']} changed {times} s (embedded "
        f"{rebuilds[0]['embedded']}, {rebuilds[0]['cached']} from the cache); ratio to the "
        f"median {cold_s / warm_s:.1f}x (CPU {cold_cpu:.1f} s / {warm_cpu:.2f} s = "
        f"{cold_cpu / warm_cpu:.1f}x)"
        + (
            f"; fresh-process CLI rebuild {result['cli_rebuild']['seconds']:.1f} s"
            if "cli_rebuild" in result
            else ""
        )
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
