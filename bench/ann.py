"""ANN benchmark: vecrec's search path against bare FAISS, hnswlib and usearch at equal recall.

    .venv/bin/pip install -e '.[bench]'
    nice .venv/bin/python bench/ann.py --sizes 100000            # ~10 min the first time
    nice .venv/bin/python bench/ann.py --sizes 100000,1000000    # the 1M point (long)

Vectors: real texts embedded by all-MiniLM-L6-v2 (ONNX fp32 backend, equal to torch to 2e-7)
through the shared embedding cache in ``--cache-dir`` (so they are embedded once, and an
interrupted run resumes): the sentences of the SciFact abstracts, consecutive sentence pairs (and
triples), and the MovieLens titles with genres, 101k in all. 1,000 of them, never indexed, are
the queries. ``--real N`` embeds only the first N texts and fills the base up to the size asked
with noisy replicas of them (Gaussian noise, sigma :data:`NOISE` per coordinate, renormalised):
the 1M point always does, and the tables say how many vectors were real.

Every library builds an HNSW graph with M=32 links and efConstruction=80, and its search breadth
(efSearch / ef / expansion) is swept upwards until recall@10 against exact search reaches
``--target``; QPS is measured at that setting: single queries on one thread (a server's request)
and one batch of all queries on all cores, every contender in alternating rounds (best of
:data:`ROUNDS`). FAISS runs twice: ``HNSW32`` (float32 vectors, what a bare FAISS user writes) and
vecrec's own choice (:func:`indexer.index_choice.hnsw_factory`, half-precision vectors), on
which vecrec's Searcher runs. vecrec's Searcher also runs on its hnswlib index type
(:func:`indexer.index_choice.hnswlib_factory`, built by vecrec, memory on huge pages), the other
graph the autotuner measures; bare hnswlib runs as its users run it. Ratios are against bare
FAISS ``HNSW32`` measured in the same run; the closing lines compare vecrec with bare FAISS on the
same index and each vecrec graph with hnswlib.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.ann import Searcher  # noqa: E402
from engine.embed_cache import CachedEmbedder, EmbeddingCache  # noqa: E402
from engine.embedder import load_embedder, normalize_rows  # noqa: E402
from indexer.faiss_build import apply_search_params, build_faiss_index  # noqa: E402
from indexer.index_choice import hnsw_factory, hnswlib_factory  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
M, EF_CONSTRUCTION = 32, 80
EF_SWEEP = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
N_QUERIES = 1000
ROUNDS = 5
N_TEXTS = 101_000
# Per-coordinate sigma of the replicas' noise: |noise| ~ 0.2, cosine to the original ~0.98.
NOISE = 0.01
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")

Search = Callable[[np.ndarray, int], np.ndarray]  # (queries, k) -> ids (m, k)


def real_texts() -> list[str]:
    """101k distinct real texts: SciFact sentences, sentence pairs (and a few triples), MovieLens
    titles with genres."""
    texts: list[str] = []
    triples: list[str] = []  # only as many as it takes to pass 100k
    with (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            sentences = [s for s in _SENTENCE.split(json.loads(line)["text"]) if len(s) > 20]
            texts += sentences
            texts += [f"{a} {b}" for a, b in itertools.pairwise(sentences)]
            triples += [" ".join(sentences[i : i + 3]) for i in range(len(sentences) - 2)]
    movies = pd.read_csv(DATA / "ml-latest-small" / "movies.csv")
    texts += [f"{t}. Genres: {g}." for t, g in zip(movies.title, movies.genres, strict=True)]
    return list(dict.fromkeys(texts + triples))[:N_TEXTS]


def embedded(
    cache_dir: Path, n: int, real: int, noise: float = NOISE
) -> tuple[np.ndarray, np.ndarray]:
    """``(base float32 (n, 384), queries float32 (1000, 384))``.

    The first ``real`` texts of :func:`real_texts` are embedded (once: the shared embedding
    cache keeps them, and an interrupted run resumes); 1,000 of them are held out as queries,
    and the rest are replicated with noise up to ``n`` when ``n`` is larger."""
    texts = real_texts()[:real]
    embedder = CachedEmbedder(
        load_embedder("all-MiniLM-L6-v2", backend="onnx", threads=2, export_dir=cache_dir / "onnx"),
        EmbeddingCache(cache_dir),
    )
    start = time.perf_counter()
    vectors = embedder.embed(texts, batch_size=64, progress=True)
    print(
        f"{len(texts):,d} real texts: {embedder.hits:,d} from the cache, {embedder.embedded:,d} "
        f"embedded in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(vectors))
    queries = vectors[order[:N_QUERIES]]
    base = vectors[order[N_QUERIES:]]
    if n <= len(base):
        return np.ascontiguousarray(base[:n]), queries
    copies = [base]
    while sum(len(c) for c in copies) < n:
        noisy = base + rng.normal(scale=noise, size=base.shape).astype(np.float32)
        copies.append(normalize_rows(noisy))
    return np.ascontiguousarray(np.vstack(copies)[:n]), queries


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    return index.search(queries, k)[1]  # type: ignore[no-any-return]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth, strict=True)])
    )


def qps(search: Search, queries: np.ndarray, k: int, *, single: bool) -> float:
    start = time.perf_counter()
    if single:
        for q in queries:
            search(q[None, :], k)
    else:
        search(queries, k)
    return len(queries) / (time.perf_counter() - start)


@dataclass
class Contender:
    """One library's index at its tuned setting: its table row and its two ways to search."""

    row: dict[str, float]
    single: Search  # one query, one thread
    batch: Search  # every query, every thread


def measure_all(
    contenders: dict[str, Contender], queries: np.ndarray, k: int, threads: int
) -> None:
    """QPS of every contender in alternating rounds, best round of each: a burst of load from
    other processes, or the machine's drift, cannot favour one library."""
    for key, single in (("qps single", True), ("qps batch", False)):
        faiss.omp_set_num_threads(1 if single else threads)
        for c in contenders.values():
            c.row[key] = 0.0
        for _ in range(ROUNDS):
            for c in contenders.values():
                search = c.single if single else c.batch
                c.row[key] = max(c.row[key], qps(search, queries, k, single=single))
    faiss.omp_set_num_threads(threads)


def tune(
    name: str,
    set_ef: Callable[[int], None],
    search: Search,
    queries: np.ndarray,
    truth: np.ndarray,
    target: float,
) -> tuple[int, float]:
    """The smallest swept ef reaching ``target`` recall@k, and its recall."""
    got = 0.0
    for ef in EF_SWEEP:
        set_ef(ef)
        got = recall(search(queries, truth.shape[1]), truth)
        if got >= target:
            return ef, got
    print(f"  {name}: recall {got:.3f} at ef {EF_SWEEP[-1]} < target", file=sys.stderr)
    return EF_SWEEP[-1], got


def file_bytes(save: Callable[[str], Any]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        save(path)
        return os.path.getsize(path)


def run_faiss(
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    target: float,
    threads: int,
    factory: str,
    *,
    with_vecrec: bool,
) -> dict[str, Contender]:
    """Bare FAISS on ``factory`` (built as vecrec builds it), and vecrec's Searcher on the same
    index when ``with_vecrec``."""
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    index = build_faiss_index(base, factory)  # vecrec's build (efConstruction 80)
    built = time.perf_counter() - start
    size = file_bytes(lambda p: faiss.write_index(index, p))
    hnsw = faiss.downcast_index(index)
    ef, got = tune(
        f"faiss {factory}",
        lambda e: setattr(hnsw.hnsw, "efSearch", e),
        lambda q, k: index.search(q, k)[1],
        queries,
        truth,
        target,
    )
    apply_search_params(index, {"efSearch": ef})

    def bare(q: np.ndarray, k: int) -> np.ndarray:
        return index.search(q, k)[1]  # type: ignore[no-any-return]

    row = {"build s": built, "bytes": size, "ef": ef}
    out = {f"bare FAISS {factory}": Contender({**row, "recall": got}, bare, bare)}
    if with_vecrec:
        searcher = Searcher(index, base, {"efSearch": ef})

        def vecrec(q: np.ndarray, k: int) -> np.ndarray:
            return searcher.search(q, k)[1]

        got = recall(searcher.search(queries, truth.shape[1])[1], truth)
        out[f"vecrec Searcher {factory}"] = Contender({**row, "recall": got}, vecrec, vecrec)
    return out


def run_vecrec_hnswlib(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, target: float, threads: int
) -> Contender:
    """vecrec's Searcher on vecrec's hnswlib index type, breadth swept like the others'."""
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    index = build_faiss_index(base, hnswlib_factory())
    built = time.perf_counter() - start
    size = file_bytes(index.write)
    searcher = Searcher(index, base)
    ef, got = tune(
        f"vecrec {hnswlib_factory()}",
        lambda e: apply_search_params(index, {"efSearch": e}),
        lambda q, k: searcher.search(q, k)[1],
        queries,
        truth,
        target,
    )
    apply_search_params(index, {"efSearch": ef})
    searcher = Searcher(index, base, {"efSearch": ef})

    def vecrec(q: np.ndarray, k: int) -> np.ndarray:
        return searcher.search(q, k)[1]

    row = {"build s": built, "bytes": size, "ef": ef, "recall": got}
    return Contender(row, vecrec, vecrec)


def run_hnswlib(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, target: float, threads: int
) -> Contender:
    import hnswlib

    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=M, ef_construction=EF_CONSTRUCTION, random_seed=1)
    index.add_items(base, num_threads=threads)
    built = time.perf_counter() - start
    size = file_bytes(index.save_index)

    def search(q: np.ndarray, k: int, n: int = threads) -> np.ndarray:
        return index.knn_query(q, k=k, num_threads=n)[0]  # type: ignore[no-any-return]

    ef, got = tune("hnswlib", index.set_ef, search, queries, truth, target)
    index.set_ef(ef)
    row = {"build s": built, "bytes": size, "ef": ef, "recall": got}
    return Contender(row, lambda q, k: search(q, k, 1), search)


def run_usearch(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, target: float, threads: int
) -> Contender | None:
    try:
        from usearch.index import Index
    except ImportError:
        return None
    start = time.perf_counter()
    index = Index(
        ndim=base.shape[1], metric="ip", dtype="f32", connectivity=M, expansion_add=EF_CONSTRUCTION
    )
    index.add(np.arange(len(base)), base, threads=threads)
    built = time.perf_counter() - start
    size = file_bytes(index.save)

    def set_ef(ef: int) -> None:
        index.expansion_search = ef

    def search(q: np.ndarray, k: int, n: int = threads) -> np.ndarray:
        return np.atleast_2d(index.search(q, k, threads=n).keys)

    ef, got = tune("usearch", set_ef, search, queries, truth, target)
    set_ef(ef)
    row = {"build s": built, "bytes": size, "ef": ef, "recall": got}
    return Contender(row, lambda q, k: search(q, k, 1), search)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated base sizes")
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 to reach")
    parser.add_argument("--threads", type=int, default=2, help="threads for builds and batches")
    parser.add_argument(
        "--real", type=int, default=N_TEXTS, help="real texts to embed (the rest: noisy replicas)"
    )
    parser.add_argument(
        "--noise", type=float, default=NOISE, help="per-coordinate sigma of the replicas' noise"
    )
    parser.add_argument("--cache-dir", default=str(ROOT / "indexes" / ".cache"))
    parser.add_argument("--skip", default="", help="comma-separated: hnswlib,usearch")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    for n in (int(s) for s in args.sizes.split(",")):
        base, queries = embedded(Path(args.cache_dir), n, args.real, args.noise)
        truth = exact_top(base, queries, 10)
        chosen = hnsw_factory()
        contenders = run_faiss(
            base, queries, truth, args.target, args.threads, f"HNSW{M}", with_vecrec=False
        )
        contenders |= run_faiss(
            base, queries, truth, args.target, args.threads, chosen, with_vecrec=True
        )
        if "hnswlib" not in skip:
            contenders[f"vecrec Searcher {hnswlib_factory()}"] = run_vecrec_hnswlib(
                base, queries, truth, args.target, args.threads
            )
            contenders["hnswlib"] = run_hnswlib(base, queries, truth, args.target, args.threads)
        if "usearch" not in skip:
            found = run_usearch(base, queries, truth, args.target, args.threads)
            if found is not None:
                contenders["usearch"] = found
        measure_all(contenders, queries, truth.shape[1], args.threads)
        rows = {name: c.row for name, c in contenders.items()}
        real = min(args.real - N_QUERIES, len(base))
        print(
            f"\n{len(base):,d} vectors x {base.shape[1]} ({real:,d} real, the rest noisy replicas "
            f"with sigma {args.noise}), "
            f"{len(queries)} held-out real queries, target recall@10 {args.target}, "
            f"{args.threads} threads for builds and batches"
        )
        print(
            "| library | build s | index MiB | ef | recall@10 | QPS single (1 thread) | "
            "QPS batch | single ×FAISS | batch ×FAISS |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        ref = rows[f"bare FAISS HNSW{M}"]
        for name, r in rows.items():
            print(
                f"| {name} | {r['build s']:.1f} | {r['bytes'] / 2**20:.0f} | {r['ef']:.0f} | "
                f"{r['recall']:.3f} | {r['qps single']:,.0f} | {r['qps batch']:,.0f} | "
                f"{r['qps single'] / ref['qps single']:.2f} | "
                f"{r['qps batch'] / ref['qps batch']:.2f} |"
            )
        v, same = rows[f"vecrec Searcher {chosen}"], rows[f"bare FAISS {chosen}"]
        print(
            f"vecrec / bare FAISS on the same index: single "
            f"{v['qps single'] / same['qps single']:.2f}, batch {v['qps batch'] / same['qps batch']:.2f}"
        )
        if "hnswlib" in rows:
            h = rows["hnswlib"]
            for factory in (chosen, hnswlib_factory()):
                v = rows[f"vecrec Searcher {factory}"]
                print(
                    f"vecrec {factory} / hnswlib: single {v['qps single'] / h['qps single']:.2f}, "
                    f"batch {v['qps batch'] / h['qps batch']:.2f}"
                )


if __name__ == "__main__":
    main()
