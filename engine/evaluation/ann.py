"""Quality of an approximate index: recall@k against the exact twin, and latency.

Queries are normalised midpoints of random pairs of stored vectors: like user vectors, they lie
between items rather than on one (an item's own vector would find itself first in any index).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.ann import Searcher, is_exact
from engine.embedder import normalize_rows
from engine.hnswlib_index import HnswlibIndex
from engine.native_params import innermost

TIE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class AnnQuality:
    recall: float
    ms_per_query: float
    params: dict[str, int]
    queries: int
    k: int


def probe_queries(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``float32 (n, d)`` unit midpoints of random pairs of ``vectors``."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(vectors), n)
    b = rng.integers(0, len(vectors), n)
    return normalize_rows(np.asarray(vectors[a]) + np.asarray(vectors[b]))


def ann_quality(
    searcher: Searcher,
    *,
    k: int = 10,
    queries: int = 200,
    params: Mapping[str, int] | None = None,
    seed: int = 0,
) -> AnnQuality:
    """Recall@k of ``searcher``'s index against its exact twin, and ms per single query."""
    probes = probe_queries(searcher.vectors, queries, seed)
    exact_scores, _ = searcher.exact(probes, k)
    start = time.perf_counter()
    found = np.vstack([searcher.search(q[None, :], k, params=params)[1] for q in probes])
    elapsed = time.perf_counter() - start
    # A hit is any result scoring at least the exact k-th score: items tied with it (to float
    # rounding, which differs between one-query and batched products) are equally correct.
    vectors = np.asarray(searcher.vectors)
    hits = [
        np.count_nonzero(vectors[f[f >= 0]] @ q >= kth - TIE_TOLERANCE)
        for f, q, kth in zip(found, probes, exact_scores[:, -1], strict=True)
    ]
    recall = float(np.mean(hits) / k)
    used = {**searcher.default_params, **(params or {})}
    return AnnQuality(recall, 1000 * elapsed / queries, used, queries, k)


def sweep_values(searcher: Searcher) -> list[dict[str, int]]:
    """The search-parameter settings worth measuring for ``searcher``'s index type."""
    import faiss

    if is_exact(searcher.index):
        return [{}]
    inner = innermost(searcher.index)
    if isinstance(inner, faiss.IndexHNSW | HnswlibIndex):
        return [{"efSearch": v} for v in (16, 32, 64, 128, 256)]
    if isinstance(inner, faiss.IndexIVF):
        nlist = int(inner.nlist)
        values: Sequence[int] = [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256) if v <= nlist]
        return [{"nprobe": v} for v in values]
    return [{}]
