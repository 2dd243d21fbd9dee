"""Private memory of a FAISS index read whole against mapped (engine/bundle.py ``read_index``).

    .venv/bin/python bench/index_memory.py PATH/index.faiss [PATH/queries.npy]

Each read runs in a fresh child process, so one does not count the other's pages. USS (memory no
other process shares) is what every further uvicorn worker pays for the index; the mapped
index's pages are the file's, in the page cache, shared by every worker that maps it. With a
``.npy`` of queries, each child also searches them (efSearch 48 / nprobe 16) and reports how much
resident memory the search brings in.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _measure(path: str, mmap: bool, queries: str | None, out: mp.Queue) -> None:
    import numpy as np
    import psutil

    sys.path.insert(0, str(ROOT))
    from engine.bundle import read_index

    process = psutil.Process()
    before = process.memory_full_info()
    index = read_index(Path(path), mmap=mmap)
    loaded = process.memory_full_info()
    result = {"uss_mib": (loaded.uss - before.uss) / 2**20}
    if queries:
        import faiss

        inner = faiss.downcast_index(index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = 48
        elif isinstance(inner, faiss.IndexIVF):
            inner.nprobe = 16
        index.search(np.load(queries), 10)
        searched = process.memory_full_info()
        result["rss_after_search_mib"] = (searched.rss - before.rss) / 2**20
    out.put(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index")
    parser.add_argument("queries", nargs="?")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    for mmap in (False, True):
        queue: mp.Queue = context.Queue()
        child = context.Process(target=_measure, args=(args.index, mmap, args.queries, queue))
        child.start()
        got = queue.get()
        child.join()
        figures = ", ".join(f"{key} {value:,.0f}" for key, value in got.items())
        print(f"{'mapped' if mmap else 'whole'}: {figures}")


if __name__ == "__main__":
    main()
