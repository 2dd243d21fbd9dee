"""Exact top-k of a chunk's queries with each query's own rows masked out, in one scan.

A user's history is excluded from their answer. A shared FAISS search cannot exclude rows per
query, so it has to fetch deeper and drop them afterwards (:mod:`engine.bulk.prefetch`), which
costs a deeper selection for every user and a second search for users with long histories. This
scan computes the same inner products as FAISS's Flat search (a BLAS matrix product), sets the
masked ones to ``-inf`` and keeps the top ``k`` in FAISS's own heaps: the exclusion is exact,
whatever the history length, for about the cost of a plain search.

Parallelism is by blocks of queries on Python threads, each running BLAS and the heaps on one
core. Letting BLAS and FAISS each spread one product over every core is slower here: their
thread pools spin-wait for work after each call and steal the cores from the other's next one
(measured on 2 vCPU: 88-93 ms per 1,024 queries × 9,742 rows against 58 ms this way, and 51 ms
for a bare FAISS search that masks nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import faiss
import numpy as np
from threadpoolctl import ThreadpoolController

from engine.bulk.prescan import PreScan, plan_prescan
from engine.topk import TopK

# Queries per block: large enough for an efficient matrix product, small enough for the
# (queries × rows) scores to stay near the cache (2 MiB per 1,024 rows).
QUERY_BLOCK = 512
# With the pre-scan, smaller blocks: the rows a block cannot rule out are the union of its
# queries' candidates (1,024 MovieLens queries, one core: 40 ms a chunk in blocks of 256 against
# 45 in blocks of 512, with the pre-scan's first version; 128 and 64 no better).
PRESCAN_QUERY_BLOCK = 256
# Rows per product: bounds a block's scores to 32 MiB whatever the catalogue's size.
COLUMN_BLOCK = 16_384

_controller: ThreadpoolController | None = None


def _blas() -> ThreadpoolController:
    global _controller
    if _controller is None:  # inspecting the loaded libraries costs milliseconds: once
        _controller = ThreadpoolController()
    return _controller


@dataclass(frozen=True)
class ScanRows:
    """The rows a scan offers to the heaps, in order, fixed for a whole job.

    ``order`` ``int64 (a,)``: the allowed rows, those nearest the catalogue's centre first;
    ``column`` ``int64 (N,)``: each row's place in ``order`` (-1: not allowed); ``gathered``
    ``float32 (a, d)``: ``vectors[order]`` when it fits one product (else gathered per block);
    ``prescan``: where it pays, the rows that follow the head in bfloat16
    (:mod:`engine.bulk.prescan`), which lets a block of queries skip the rows none of them ranks.

    A heap only does work (a replacement, ~log k steps) for a score above its current k-th; its
    comparisons alone are cheap. Rows near the centre score high for most users, so offering them
    first raises every threshold early: 1,024 users' queries against 9,742 MovieLens rows at
    k = 100 took 96 ms in this order against 114 ms in the catalogue's, on one core; a bare FAISS
    search of the same queries took 97 (bench/RESULTS.md, issue 6). The order changes only which
    of two exactly equal scores is kept at the k-th place.
    """

    order: np.ndarray
    column: np.ndarray
    gathered: np.ndarray | None
    prescan: PreScan | None = None


def scan_rows(
    vectors: np.ndarray, allowed: np.ndarray | None, prescan: bool | None = None
) -> ScanRows:
    """:class:`ScanRows` of ``float32 (N, d)`` ``vectors``, ``allowed`` ``bool (N,)`` (None: all).

    ``prescan``: None uses the bfloat16 pre-scan where this machine runs it fast enough (measured
    once, :func:`engine.bulk.prescan.plan_prescan`), True always (where the rows fit one block),
    False never."""
    rows = np.arange(len(vectors)) if allowed is None else np.flatnonzero(allowed)
    if len(rows):
        chosen = np.asarray(vectors if allowed is None else vectors[rows], dtype=np.float32)
        centre = chosen.mean(axis=0, dtype=np.float64).astype(np.float32)
        rows = rows[np.argsort(-(chosen @ centre), kind="stable")]
    order = rows.astype(np.int64)
    column = np.full(len(vectors), -1, dtype=np.int64)
    column[order] = np.arange(len(order))
    gathered = _gather(vectors, order) if len(order) <= COLUMN_BLOCK else None
    planned = None if gathered is None else plan_prescan(gathered, prescan)
    return ScanRows(order, column, gathered, planned)


def masked_top_k(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    rows: ScanRows,
    masked_queries: np.ndarray,
    masked_rows: np.ndarray,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of the allowed rows of ``vectors`` by inner product with each query, best first.

    ``vectors`` ``float32 (N, d)``, ``queries`` ``float32 (m, d)``; ``rows`` (from
    :func:`scan_rows` of the same ``vectors``) holds the rows every query may get, and row
    ``masked_rows[i]`` is excluded for query ``masked_queries[i]`` only (both ``int64 (e,)``,
    ``masked_queries`` non-decreasing). Returns the scores and the rows found, ``float32 (m, k)``
    and ``int64 (m, k)``, best first; where fewer rows remain the tail is ``-inf`` and ``-1``.
    ``threads``: default FAISS's thread count.
    """
    m = len(queries)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    scores = np.empty((m, k), dtype=np.float32)
    found = np.empty((m, k), dtype=np.int64)
    # Masks move to the scan's columns; a masked row that is not allowed needs no mask.
    masked_columns = rows.column[masked_rows]
    kept = masked_columns >= 0
    masked_queries, masked_columns = masked_queries[kept], masked_columns[kept]
    # The head must leave each heap full for its floors to mean anything.
    pruned = rows.prescan is not None and 2 * k <= rows.prescan.head
    size = PRESCAN_QUERY_BLOCK if pruned else QUERY_BLOCK
    spans = [(lo, min(lo + size, m)) for lo in range(0, m, size)]
    bounds = np.searchsorted(masked_queries, [lo for lo, _ in spans] + [m])
    blocks = [
        _QueryBlock(
            queries[lo:hi],
            masked_queries[bounds[b] : bounds[b + 1]] - lo,
            masked_columns[bounds[b] : bounds[b + 1]],
            TopK(scores[lo:hi], found[lo:hi]),
        )
        for b, (lo, hi) in enumerate(spans)
    ]
    n = len(rows.order)
    workers = max(1, min(threads or faiss.omp_get_max_threads(), len(blocks)))
    with (
        _blas().limit(limits=1, user_api="blas"),
        ThreadPoolExecutor(workers, thread_name_prefix="vecrec-scan") as pool,
    ):

        def each(offer: Callable[[_QueryBlock], None]) -> None:
            if workers == 1:  # on the calling thread: no hand-over, its own thread settings
                for block in blocks:
                    offer(block)
            else:
                list(pool.map(offer, blocks))

        if pruned:  # every row offered or provably skipped
            each(partial(_offer_pruned, rows=rows))
        else:  # columns outside, queries inside: each block of rows gathered once for all queries
            for start in range(0, n, COLUMN_BLOCK):
                stop = min(start + COLUMN_BLOCK, n)
                ids = rows.order[start:stop]
                chosen = rows.gathered if rows.gathered is not None else _gather(vectors, ids)
                each(partial(_offer, chosen=chosen, ids=ids, start=start))
    for block in blocks:
        block.heaps.finish()
    return scores, found


def _gather(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


@dataclass(frozen=True)
class _QueryBlock:
    """A block of queries (C-contiguous), its masks (block-local query, scan column) and heaps."""

    queries: np.ndarray
    masked_queries: np.ndarray
    masked_columns: np.ndarray
    heaps: TopK


def _offer(
    block: _QueryBlock,
    *,
    chosen: np.ndarray,
    ids: np.ndarray,
    start: int,
    columns: np.ndarray | None = None,
) -> None:
    """Offer the scan's columns ``start ..`` (rows ``ids``, vectors ``chosen``) to ``block``, or
    its ``columns`` (ascending) when given."""
    faiss.omp_set_num_threads(1)  # this thread's OpenMP setting only
    products = block.queries @ chosen.T
    mq, mc = block.masked_queries, block.masked_columns
    if columns is None:
        inside = (mc >= start) & (mc < start + len(ids))
        products[mq[inside], mc[inside] - start] = -np.inf
    elif len(columns):
        # Each scan column's place among ``columns`` (-1: not offered), one lookup per mask.
        place = np.full(int(columns[-1]) + 1, -1, dtype=np.int64)
        place[columns] = np.arange(len(columns))
        found = place[np.minimum(mc, len(place) - 1)]
        inside = (found >= 0) & (mc < len(place))
        products[mq[inside], found[inside]] = -np.inf
    block.heaps.add(products, ids=ids)


def _offer_pruned(block: _QueryBlock, *, rows: ScanRows) -> None:
    """Every row that may reach ``block``'s answers: the head exactly, then the rows the
    bfloat16 pre-scan cannot rule out against the floors the head set (module docstring of
    :mod:`engine.bulk.prescan`)."""
    assert rows.gathered is not None and rows.prescan is not None
    head = rows.prescan.head
    _offer(block, chosen=rows.gathered[:head], ids=rows.order[:head], start=0)
    columns = head + rows.prescan.candidates(block.queries, block.heaps.floors())
    if len(columns):
        chosen = rows.gathered[columns]
        _offer(block, chosen=chosen, ids=rows.order[columns], start=0, columns=columns)
