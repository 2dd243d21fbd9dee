"""A graph index backed by hnswlib, beside FAISS's own HNSW (factory ``hnswlib32``).

Why a second graph engine: on some CPUs FAISS's graph search is well behind hnswlib's on the
same graph settings and recall (a 2 vCPU Intel Xeon with AVX-512: 0.70× at 1M vectors; an AMD
EPYC: 0.80×), and a bundle's graph search should be as fast as the best library's
(bench/RESULTS.md, issue 7). The autotuner (indexer/autotune.py) measures both and keeps the
faster on the machine that builds.

:class:`HnswlibIndex` offers the part of FAISS's index interface the engine uses (``d``,
``ntotal``, ``search``, ``add``, ``reset``), so the Searcher, compaction and the bundle treat
it like any index. Differences, by design:

* Per-request breadth without shared state: hnswlib searches with ``max(ef, k)``, its ``ef``
  being one setting for the whole index, so the index keeps ``ef`` at 1 and every search asks
  for ``max(breadth, k)`` neighbours and keeps the best ``k``: the same search as ``ef =
  breadth``, and concurrent requests with different breadths do not see each other's.
* Filters are applied after the search: hnswlib calls a Python function for every visited node
  otherwise. The search fetches enough neighbours for ``k`` allowed ones at the allowed
  fraction (×:data:`FILTER_OVERFETCH`); a query left short is answered exactly by the Searcher,
  and so is a filter that would need more than :data:`FILTER_MAX_FETCH` neighbours.
* Not memory-mapped: hnswlib reads its file whole (each server worker holds its own copy).
  Its memory is backed by huge pages where the system allows (engine/hugepages.py).

Scores are inner products (hnswlib's ``ip`` distance is ``1 - ip``); rows are int64 with -1 and
``-inf`` padding, as FAISS answers.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from engine.errors import InvalidArgument
from engine.hugepages import huge_pages_for_new_mappings
from engine.topk import empty_answer

FACTORY = re.compile(r"hnswlib(\d*)", re.IGNORECASE)
DEFAULT_LINKS = 32
# Allowed neighbours fetched per wanted one, over the allowed fraction's expectation.
FILTER_OVERFETCH = 2.0
# Past this many neighbours a graph search costs more than the Searcher's exact scan of the
# allowed rows (it scans exactly when the graph answers nothing); efSearch's own upper bound.
FILTER_MAX_FETCH = 4096
SEED = 1
# Breadth for a bundle whose manifest names none (the build always records one).
DEFAULT_EF_SEARCH = 64


def is_hnswlib_factory(factory: str) -> bool:
    return FACTORY.fullmatch(factory.strip()) is not None


def factory_links(factory: str) -> int:
    """M (links per node) of an ``hnswlibM`` factory string; :data:`DEFAULT_LINKS` for bare
    ``hnswlib``."""
    match = FACTORY.fullmatch(factory.strip())
    if match is None:
        raise InvalidArgument(f"factory {factory!r} is not hnswlibM", field="factory")
    links = int(match.group(1) or DEFAULT_LINKS)
    if links < 2:
        raise InvalidArgument(f"factory {factory!r}: hnswlib needs M >= 2 links", field="factory")
    return links


def hnswlib_available() -> bool:
    """True when the optional hnswlib package is installed."""
    return importlib.util.find_spec("hnswlib") is not None


def _module() -> Any:
    try:
        import hnswlib
    except ImportError as exc:
        raise InvalidArgument(
            "the hnswlib index needs the hnswlib package: pip install 'vecrec[hnswlib]'",
            field="factory",
        ) from exc
    return hnswlib


def _threads() -> int:
    """Threads for a batch of queries: FAISS's OpenMP setting, so one knob governs both."""
    return max(int(faiss.omp_get_max_threads()), 1)


def _new_graph(d: int, links: int, ef_construction: int) -> Any:
    graph = _module().Index(space="ip", dim=d)
    graph.init_index(max_elements=1, M=links, ef_construction=ef_construction, random_seed=SEED)
    graph.set_ef(1)  # see the module docstring: every search asks for its own breadth
    return graph


class HnswlibIndex:
    """An hnswlib graph over ``float32 (n, d)`` unit vectors, rows numbered 0..n-1."""

    def __init__(self, graph: Any, d: int, ef_search: int) -> None:
        self.graph = graph
        self.d = d
        self.ef_search = ef_search  # the default breadth; see the module docstring

    @classmethod
    def empty(cls, d: int, links: int, ef_construction: int, ef_search: int) -> HnswlibIndex:
        return cls(_new_graph(d, links, ef_construction), d, ef_search)

    @classmethod
    def read(cls, path: str | Path, d: int, ef_search: int) -> HnswlibIndex:
        graph = _module().Index(space="ip", dim=d)
        with huge_pages_for_new_mappings():
            graph.load_index(str(path))
        graph.set_ef(1)
        return cls(graph, d, ef_search)

    def write(self, path: str | Path) -> None:
        self.graph.save_index(str(path))

    @property
    def ntotal(self) -> int:
        return int(self.graph.element_count)

    @property
    def links(self) -> int:
        return int(self.graph.M)

    def add(self, vectors: np.ndarray) -> None:
        """Append ``float32 (m, d)`` rows after the current ones."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        start = self.ntotal
        with huge_pages_for_new_mappings():
            self.graph.resize_index(start + len(vectors))
        self.graph.add_items(
            vectors,
            np.arange(start, start + len(vectors)),
            num_threads=1 if len(vectors) == 1 else _threads(),
        )

    def reset(self) -> None:
        """Drop every row (the settings stay)."""
        self.graph = _new_graph(self.d, self.links, int(self.graph.ef_construction))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        ef: int | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of ``float32 (m, d)`` queries with breadth ``ef`` (the default when None),
        among ``allowed`` rows (``bool (ntotal,)``, None for all)."""
        m, n = len(queries), self.ntotal
        fetch = k
        if allowed is not None:
            eligible = int(np.count_nonzero(allowed))
            fetch = math.ceil(k * FILTER_OVERFETCH * n / max(eligible, 1)) if eligible else 0
        ask = min(max(ef or self.ef_search, k, fetch), n)
        if m == 0 or ask == 0 or fetch == 0 or fetch > max(FILTER_MAX_FETCH, k):
            return empty_answer(m, k)
        try:
            labels, distances = self.graph.knn_query(
                queries, k=ask, num_threads=1 if m == 1 else _threads()
            )
        except RuntimeError:
            # hnswlib found fewer than ``ask`` nodes (a tiny or sparse graph): the Searcher
            # answers the short queries exactly.
            return empty_answer(m, k)
        found = labels.view(np.int64)  # row numbers < 2**63: the same bits
        sims = np.subtract(1.0, distances, dtype=np.float32)
        if allowed is not None:
            keep = allowed[found]
            # The first k allowed of each row, in the graph's order (best first).
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            valid = np.take_along_axis(keep, order, axis=1)
            found = np.where(valid, np.take_along_axis(found, order, axis=1), -1)
            sims = np.where(valid, np.take_along_axis(sims, order, axis=1), -np.inf)
        if found.shape[1] == k:
            return sims, found
        if found.shape[1] > k:
            return np.ascontiguousarray(sims[:, :k]), np.ascontiguousarray(found[:, :k])
        scores, rows = empty_answer(m, k)
        scores[:, : found.shape[1]] = sims
        rows[:, : found.shape[1]] = found
        return scores, rows


def build_hnswlib(
    vectors: np.ndarray, factory: str, ef_construction: int, ef_search: int
) -> HnswlibIndex:
    """An :class:`HnswlibIndex` over ``float32 (n, d)`` unit ``vectors``."""
    index = HnswlibIndex.empty(vectors.shape[1], factory_links(factory), ef_construction, ef_search)
    if len(vectors):
        index.add(vectors)
    return index
