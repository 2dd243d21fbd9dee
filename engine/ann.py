"""Nearest-neighbour search over a bundle: the FAISS index, and its exact twin.

:meth:`Searcher.search` answers with the bundle's index, restricted to allowed rows by a FAISS ID
selector inside the search (the hnswlib graph, engine/hnswlib_index.py, filters after its own).
It never returns fewer hits than ``min(k, allowed rows)``:

* a small allowed set (at most :data:`EXACT_SCAN_MAX_ROWS`) is scanned exactly, which is both
  faster than graph or list traversal and exact (Qdrant's cardinality rule does the same);
* if an approximate index still comes back short (a selective filter starves HNSW's candidate
  list or IVF's probed lists), the short queries are answered again exactly.

:meth:`Searcher.exact` is the oracle: brute-force inner product over the stored vectors. Tests
measure each approximate index's recall against it.

Search parameters (``efSearch``, ``nprobe``) are the searcher's defaults (manifest, then the
Recommender's config); :meth:`Searcher.with_params` gives one request its own over them, as a
view sharing everything else. With a GPU twin (engine/gpu.py, ``--gpu``) the approximate search
runs on the GPU copy of the index when it can, else on the CPU index.

Queries are ``float32 (m, d)`` unit rows; results are ``(scores float32 (m, k), rows int64 (m, k))``
with ``-1`` rows and ``-inf`` scores where fewer than ``k`` rows are allowed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import faiss
import numpy as np

from engine.gpu import GpuTwin
from engine.hnswlib_index import HnswlibIndex
from engine.native_params import carries, innermost, ivf_nlist, own_search_params
from engine.search_params import check_search_params
from engine.topk import empty_answer, top_k

# Scanning 20k rows of 384 floats is ~8 MFLOP per query, well under a millisecond on one core.
EXACT_SCAN_MAX_ROWS = 20_000
# An exact scan gathers the allowed rows when they are under 1/4 of all rows, else scans all.
GATHER_BELOW_FRACTION = 4
# FAISS's own threshold (distance_compute_blas_threshold) for switching to a BLAS product.
BLAS_FROM_QUERIES = 20


def selector_from_mask(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """A FAISS bitmap selector for ``bool (n,)`` and the buffer it points into (keep it alive)."""
    bits = np.packbits(mask.astype(bool), bitorder="little")
    return faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits)), bits


def search_parameters(
    index: Any, selector: Any, overrides: Mapping[str, int], k: int
) -> tuple[Any, list[Any]]:
    """FAISS search parameters for ``index``'s type, carrying ``selector``.

    Returns the parameters and the objects they reference (keep them alive during the search).
    """
    index = faiss.downcast_index(index)
    keep: list[Any] = []
    params: Any
    if isinstance(index, faiss.IndexPreTransform):
        inner, keep = search_parameters(index.index, selector, overrides, k)
        params = faiss.SearchParametersPreTransform()
        params.index_params = inner
        keep.append(inner)
        return params, keep
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        # HNSW returns at most efSearch hits: it must be at least k.
        params.efSearch = max(int(overrides.get("efSearch", index.hnsw.efSearch)), k)
    elif isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF()
        params.nprobe = int(overrides.get("nprobe", index.nprobe))
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params, keep


def is_exact(index: Any) -> bool:
    """True when ``index`` stores full vectors and scans them all (Flat)."""
    return isinstance(innermost(index), faiss.IndexFlat)


class Searcher:
    """Search one bundle's index, with filters inside the search and an exact fallback.

    ``vectors`` may hold more rows than the index (items appended by live updates after
    ``indexed_rows``): those are scanned exactly and merged with the index's answer. ``live``
    (``bool (n,)``, None for all) masks out tombstoned rows in every search. ``gpu`` is the
    index's GPU copy (engine/gpu.py), searched instead of ``index`` when it can answer.
    """

    def __init__(
        self,
        index: Any,
        vectors: np.ndarray,
        default_params: Mapping[str, int] | None = None,
        *,
        live: np.ndarray | None = None,
        gpu: GpuTwin | None = None,
    ) -> None:
        self.index = index
        self.vectors = vectors
        self.default_params = dict(default_params or {})
        self.live = live
        self.gpu = gpu
        self.indexed_rows = int(index.ntotal)
        self._exact_index = is_exact(index)
        # Read once: indexes are not re-tuned after loading (engine/native_params.py).
        self._own_params = own_search_params(index)
        self._nlist = ivf_nlist(index)
        self._default_overrides: dict[str, int] | None = None
        self._carries_by_k: dict[int, bool] = {}
        # Searches with no mask can go straight to FAISS (see search()).
        self._direct = (
            not self._exact_index and live is None and gpu is None
            and len(vectors) == self.indexed_rows
        )  # fmt: skip

    def with_params(self, params: Mapping[str, int] | None) -> Searcher:
        """This searcher with ``params`` over its default search parameters, for one request.

        A shallow copy: index, vectors, masks and GPU twin are shared, nothing is mutated, so
        concurrent requests with different parameters do not see each other's.
        """
        checked = check_search_params(params, field="search_params")
        if not checked or all(self.default_params.get(k) == v for k, v in checked.items()):
            return self
        view = copy.copy(self)
        view.default_params = {**self.default_params, **checked}
        view._default_overrides, view._carries_by_k = None, {}  # they follow default_params
        return view

    @property
    def size(self) -> int:
        return len(self.vectors)

    def _restrict(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if self.live is None:
            return allowed
        return self.live if allowed is None else allowed & self.live

    def exact(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-``k`` by inner product over the stored vectors (allowed rows only).

        One BLAS product of the queries with the allowed rows: a sparse allowed set is gathered
        first, a dense one is scanned whole with the disallowed rows' scores set to -inf inside
        the scan's result before the top-k is taken.
        """
        allowed = self._restrict(allowed)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        m, n = queries.shape[0], len(self.vectors)
        scores, found = empty_answer(m, k)
        rows = None
        if allowed is not None and np.count_nonzero(allowed) * GATHER_BELOW_FRACTION < n:
            rows = np.flatnonzero(allowed)
            base = np.asarray(self.vectors[rows])
            eligible = len(rows)
        else:
            base = np.asarray(self.vectors)
            eligible = n if allowed is None else int(np.count_nonzero(allowed))
        kk = min(k, eligible)
        if kk == 0:
            return scores, found
        sims = _inner_products(queries, base)
        if allowed is not None and rows is None:
            np.copyto(sims, -np.inf, where=~allowed[None, :])
        top_scores, top = top_k(sims, kk)
        scores[:, :kk] = top_scores
        found[:, :kk] = top if rows is None else np.where(top >= 0, rows[top], -1)
        return scores, found

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        params: Mapping[str, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query among ``allowed`` (``bool (n,)``; None allows all)."""
        if allowed is None and params is None and self._direct and 0 < k <= self.indexed_rows:
            # The plain search (no mask, no appended rows, no GPU, the index's own parameters):
            # straight to FAISS, as a bare caller would. A padded answer takes the full path.
            plain = np.ascontiguousarray(queries, dtype=np.float32)
            if self._carries(self.parameters(None), k):
                scores, found = self.index.search(plain, k)
                # A single query reads one element, not a reduction: ~2.5 µs less per call.
                last = found[:, -1]
                if last[0] >= 0 if len(last) == 1 else (last >= 0).all():
                    return scores, found
        filtered = allowed is not None
        allowed = self._restrict(allowed)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        m = queries.shape[0]
        eligible = self.size if allowed is None else int(np.count_nonzero(allowed))
        if eligible == 0 or k <= 0:
            return empty_answer(m, max(k, 0))
        # Tombstones alone do not make a search selective (a few % of rows are out): only a
        # caller's filter or exclusion sends a small eligible set to the exact scan.
        if self._exact_index or (filtered and eligible <= EXACT_SCAN_MAX_ROWS):
            # A Flat index is this same scan: BLAS over the stored vectors beats FAISS's
            # per-query selector loop (36 ms against ~1 ms for 20 queries over 9,742 rows).
            return self.exact(queries, k, allowed)

        scores, found = self._approximate(queries, k, allowed, params)
        if self.size > self.indexed_rows:
            # Rows appended by live updates are not in the index: their exact twin, merged.
            appended = np.zeros(self.size, dtype=bool)
            appended[self.indexed_rows :] = (
                True if allowed is None else allowed[self.indexed_rows :]
            )
            scores, found = _merge(scores, found, *self.exact(queries, k, appended), k)

        # Answers are padded with -1 at their end: a query is short when its want-th is -1.
        short_mask = found[:, min(k, eligible) - 1] < 0
        if short_mask.any():
            short = np.flatnonzero(short_mask)
            exact_scores, exact_found = self.exact(queries[short], k, allowed)
            scores[short] = exact_scores
            found[short] = exact_found
        return scores, found

    def _approximate(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        params: Mapping[str, int] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's top-``k`` among the indexed rows that ``allowed`` admits."""
        indexed = None if allowed is None else allowed[: self.indexed_rows]
        overrides = self.parameters(params)
        if isinstance(self.index, HnswlibIndex):
            return self.index.search(queries, k, ef=overrides.get("efSearch"), allowed=indexed)
        selector, bits = (None, None) if indexed is None else selector_from_mask(indexed)
        search_params: Any = None
        keep: list[Any] = []
        if selector is not None or not self._carries(overrides, k):
            search_params, keep = search_parameters(self.index, selector, overrides, k)
        answer = self._on_gpu(queries, k, selector is not None, overrides, search_params)
        if answer is not None:
            scores, found = answer
        elif search_params is None:
            scores, found = self.index.search(queries, k)
        else:
            scores, found = self.index.search(queries, k, params=search_params)
        del keep, bits  # the search is over: the selector's buffers may go
        if (found[:, -1] < 0).any():  # padded at the end, if at all
            scores[found < 0] = -np.inf  # FAISS pads with -FLT_MAX; one convention for both
        return scores, found.astype(np.int64, copy=False)

    def parameters(self, params: Mapping[str, int] | None) -> dict[str, int]:
        """The search parameters in force: the defaults, ``params`` over them, nprobe capped at
        nlist (more probes than lists is every list; FAISS clamps it too)."""
        if not params and self._default_overrides is not None:
            return self._default_overrides
        overrides = {**self.default_params, **(params or {})}
        if self._nlist is not None and "nprobe" in overrides:
            overrides["nprobe"] = min(overrides["nprobe"], self._nlist)
        if not params:
            self._default_overrides = overrides
        return overrides

    def _carries(self, overrides: Mapping[str, int], k: int) -> bool:
        """:func:`carries`, remembered per k for the default parameters (single queries run
        this on every call; ~2 µs of a ~60 µs HNSW search)."""
        if overrides is not self._default_overrides:
            return carries(self._own_params, overrides, k)
        if k not in self._carries_by_k:
            self._carries_by_k[k] = carries(self._own_params, overrides, k)
        return self._carries_by_k[k]

    def _on_gpu(
        self,
        queries: np.ndarray,
        k: int,
        filtered: bool,
        overrides: Mapping[str, int],
        search_params: Any,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The GPU twin's answer, or None when there is none or it cannot answer this search."""
        if self.gpu is None:
            return None
        reason = self.gpu.refusal(k, filtered, overrides)
        if reason is None:
            try:
                return self.gpu.search(queries, k, search_params)
            except RuntimeError as exc:  # a FAISS GPU limit this code does not know of
                text = str(exc).strip()
                reason = (
                    f"GPU search failed: {text.splitlines()[0] if text else type(exc).__name__}"
                )
        self.gpu.fell_back(reason)
        return None


def _inner_products(queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``float32 (m, n)`` inner products of ``(m, d)`` queries with ``(n, d)`` rows.

    A few queries go through FAISS's SIMD kernel, one query at a time, as FAISS's own Flat
    search does below :data:`BLAS_FROM_QUERIES`. The server answers requests on many threads,
    and their concurrent BLAS calls collapsed: 8 threads calling ``recommend`` answered 27-90
    requests/s against ~1,400 on one thread (2 vCPU, BLAS capped at one thread); with this
    kernel, 1,250 (bench/RESULTS.md, issue 7, HTTP). It makes no BLAS call and frees the GIL.
    """
    if len(queries) >= BLAS_FROM_QUERIES:
        return np.asarray(queries @ base.T, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    out = np.empty((len(queries), len(base)), dtype=np.float32)
    for i in range(len(queries)):
        faiss.fvec_inner_products_ny(  # type: ignore[attr-defined]  # not in faiss's stub
            faiss.swig_ptr(out[i]), faiss.swig_ptr(queries[i]), faiss.swig_ptr(base),
            base.shape[1], len(base),
        )  # fmt: skip
    return out


def _merge(
    scores: np.ndarray, found: np.ndarray, more_scores: np.ndarray, more_found: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` per query of two ``(m, k)`` answers over disjoint rows."""
    all_scores = np.concatenate([scores, more_scores], axis=1)
    all_found = np.concatenate([found, more_found], axis=1)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(
        all_found, order, axis=1
    )
