"""Build time and peak memory of the full sample catalogue, against the bare libraries.

Each phase runs in a fresh child process so its peak resident memory is its own:

* ``bare``: sentence-transformers ``encode`` of the same composed texts + a FAISS ``IndexFlatIP``;
* ``vecrec``: ``vecrec index build`` of the sample (catalogue, tags join, popularity, bundle write).

Usage: ``python bench/build_sample.py [--limit N]`` (default: the whole catalogue).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def _bare(limit: int | None, out: mp.Queue) -> None:
    import faiss
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from engine.embedder import default_model_path
    from indexer.catalog import load_catalog
    from indexer.sample import sample_config

    texts = load_catalog(sample_config().catalog).texts[:limit]
    start = time.perf_counter()
    model = SentenceTransformer(str(default_model_path()), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    seconds = time.perf_counter() - start
    out.put({"seconds": seconds, "items": len(texts), "peak_rss_mib": _peak_mib()})


def _vecrec(limit: int | None, out: mp.Queue, indexes_dir: str | None = None) -> None:
    from indexer.build import build
    from indexer.catalog import load_catalog
    from indexer.sample import sample_config

    config = sample_config(Path(indexes_dir or tempfile.mkdtemp(prefix="vecrec-bench-")))
    config = replace(config, progress=False)
    if limit is not None:
        # A slice of the catalogue, written as a file so the real reader runs on it.
        table = load_catalog(config.catalog).table
        sliced = Path(tempfile.mkdtemp()) / "movies.csv"
        import pandas as pd

        movies = pd.read_csv(config.catalog.path, dtype={"movieId": str})
        movies[movies["movieId"].isin(table["id"][:limit])].to_csv(sliced, index=False)
        config = replace(config, catalog=replace(config.catalog, path=sliced))
    start = time.perf_counter()
    report = build(config)
    seconds = time.perf_counter() - start
    out.put(
        {
            "seconds": seconds,
            "items": report.manifest.item_count,
            "phases": report.seconds,
            "peak_rss_mib": _peak_mib(),
        }
    )


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(phase, limit: int | None, *extra: object) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=phase, args=(limit, queue, *extra))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--indexes-dir", default=None, help="keep the built sample here (default: a temp dir)"
    )
    args = parser.parse_args()
    bare = run(_bare, args.limit)
    ours = run(_vecrec, args.limit, args.indexes_dir)
    print(json.dumps({"bare": bare, "vecrec": ours}, indent=2))
    print(
        f"items {ours['items']}: vecrec build {ours['seconds']:.1f} s, peak RSS "
        f"{ours['peak_rss_mib']:.0f} MiB | bare encode+Flat {bare['seconds']:.1f} s, "
        f"{bare['peak_rss_mib']:.0f} MiB | time ratio vecrec/bare "
        f"{ours['seconds'] / bare['seconds']:.2f}, memory ratio "
        f"{ours['peak_rss_mib'] / bare['peak_rss_mib']:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
