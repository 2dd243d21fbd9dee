"""One search for a whole chunk of users, and each user's searches answered from it.

Online, every user's strategy calls :meth:`Searcher.search` with its own query vectors and its
own allowed mask (its history excluded). In bulk, every user's query vectors are planned first
(:func:`plan_queries`: the same functions the strategies call), searched together in one matrix
search under the mask the users share (filters, ``exclude``, tombstones), a little deeper than
asked, and a :class:`PrefetchedSearcher` then answers each user's own search by dropping the rows
that user may not see.

That answer is the online answer whenever the online search is exact (a ``Flat`` index, or an
allowed set small enough to be scanned exactly: :func:`answers_exactly`): the shared mask admits
a superset of the user's rows, so the first ``k`` of the user's rows in the shared ranking are
the user's top ``k``. The one difference is floating-point rounding: a matrix product and a
vector product sum in different orders, so scores can differ in the last bits (~1e-7) and two
items whose scores tie to within that can trade places. Everything else is answered by the real
:class:`Searcher`, exactly as online, and counted (``fallbacks``): a query that is not the
planned one, a deeper search than prefetched (crowding growing its pool), a user whose excluded
rows used up the prefetched depth, an approximate (HNSW, IVF) search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from engine.ann import EXACT_SCAN_MAX_ROWS, Searcher, is_exact
from engine.native_params import innermost
from engine.strategies import (
    Candidates,
    InterestPlan,
    best_score_candidates,
    interest_queries,
    mean_candidates,
    multi_interest_candidates,
    positive_probes,
)
from engine.usermodel import UserModelConfig, UserSignal, mean_query

# Queries per exact (BLAS) scan when the search cannot go to FAISS directly: bounds the
# (queries × rows) score matrix to ~80 MB on a 10k-row catalogue.
SCAN_BLOCK = 2048
# Prefetched rows per query beyond the pool, for the users' excluded rows: at most this many
# times the pool more (a user whose exclusions use up more is searched on its own).
EXTRA_DEPTH_FACTOR = 2
EXTRA_DEPTH_MIN = 64


@dataclass(frozen=True)
class Plan:
    """A user's planned search: ``queries`` ``float32 (m, d)``, and what the strategy computed
    to get them (handed back to it, so nothing is computed twice)."""

    queries: np.ndarray
    query: np.ndarray | None = None  # mean
    positives: tuple[np.ndarray, np.ndarray] | None = None  # best_score
    interests: InterestPlan | None = None  # multi_interest


def plan_queries(
    strategy: str, signal: UserSignal, config: UserModelConfig, max_interests: int
) -> Plan | None:
    """The query vectors ``strategy`` will search with for ``signal`` (None: nothing positive)."""
    if strategy == "multi_interest":
        interests = interest_queries(signal, config, max_interests)
        return None if interests is None else Plan(interests[0], interests=interests)
    if strategy == "best_score":
        positives = positive_probes(signal, config)
        return Plan(positives[0], positives=positives) if len(positives[0]) else None
    query = mean_query(signal, config)
    return None if query is None else Plan(query[None, :], query=query)


def plan_candidates(
    plan: Plan,
    signal: UserSignal,
    config: UserModelConfig,
    searcher: Searcher,
    pool: int,
    allowed: np.ndarray | None,
    max_interests: int,
) -> Candidates | None:
    """:func:`engine.strategies.candidates` of the planned strategy, from the plan."""
    if plan.interests is not None:
        return multi_interest_candidates(
            signal, config, searcher, pool, allowed, max_interests, plan.interests
        )
    if plan.positives is not None:
        return best_score_candidates(signal, config, searcher, pool, allowed, plan.positives)
    return mean_candidates(signal, config, searcher, pool, allowed, plan.query)


def answers_exactly(searcher: Searcher, allowed: np.ndarray | None, eligible: int) -> bool:
    """True when :meth:`Searcher.search` with ``allowed`` (``eligible`` rows) scans exactly."""
    return is_exact(searcher.index) or (allowed is not None and eligible <= EXACT_SCAN_MAX_ROWS)


def prefetch_depth(pool: int, excluded: Sequence[int], size: int) -> int:
    """Rows to fetch per query: the pool plus room for the users' excluded rows."""
    extra = min(max(excluded, default=0), max(EXTRA_DEPTH_FACTOR * pool, EXTRA_DEPTH_MIN))
    return int(min(size, pool + extra))


def batch_search(
    searcher: Searcher, queries: np.ndarray, depth: int, shared: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` of ``float32 (m, d)`` queries among ``shared``: ``(scores, rows)`` ``(m, depth)``.

    With nothing masked and every row in a Flat inner-product index this is one FAISS call;
    otherwise the Searcher's exact scan in blocks of :data:`SCAN_BLOCK` queries.
    """
    index = innermost(searcher.index)
    direct = (
        shared is None
        and isinstance(index, faiss.IndexFlat)
        and index.metric_type == faiss.METRIC_INNER_PRODUCT
        and int(index.ntotal) == len(searcher.vectors)
    )
    if direct:
        scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
        scores[rows < 0] = -np.inf
        return scores, rows.astype(np.int64, copy=False)
    parts = [
        searcher.exact(queries[i : i + SCAN_BLOCK], depth, shared)
        for i in range(0, len(queries), SCAN_BLOCK)
    ]
    if not parts:
        return np.zeros((0, depth), np.float32), np.zeros((0, depth), np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class PrefetchedSearcher:
    """One user's view of the chunk's search; what it cannot answer goes to ``searcher``."""

    def __init__(
        self,
        searcher: Searcher,
        queries: np.ndarray | None,
        scores: np.ndarray | None,
        rows: np.ndarray | None,
        exact: bool,
    ) -> None:
        self.searcher = searcher
        self.vectors = searcher.vectors
        self._queries, self._scores, self._rows = queries, scores, rows
        self._exact = exact
        self.fallbacks = 0

    @property
    def index(self) -> object:
        return self.searcher.index

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        found = self._answer(queries, k, allowed)
        if found is None:
            self.fallbacks += 1
            return self.searcher.search(queries, k, allowed)
        return found

    def _answer(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        planned, scores, rows = self._queries, self._scores, self._rows
        if (
            planned is None
            or scores is None
            or rows is None
            or not self._exact
            or k <= 0
            or queries.shape != planned.shape
            or not np.array_equal(queries, planned)
        ):
            return None
        depth = rows.shape[1]
        valid = rows >= 0
        exhaustive = valid.sum(axis=1) < depth  # the shared set ran out: every row was fetched
        keep = valid if allowed is None else valid & allowed[np.where(valid, rows, 0)]
        eligible = None if allowed is None else int(np.count_nonzero(allowed))
        want = k if eligible is None else min(k, eligible)
        kept = keep.sum(axis=1)
        if np.any((kept < want) & ~exhaustive):
            return None  # exclusions used up the prefetched depth
        m = len(queries)
        out_scores = np.full((m, k), -np.inf, dtype=np.float32)
        out_rows = np.full((m, k), -1, dtype=np.int64)
        for j in range(m):
            chosen = np.flatnonzero(keep[j])[:k]
            out_scores[j, : len(chosen)] = scores[j, chosen]
            out_rows[j, : len(chosen)] = rows[j, chosen]
        return out_scores, out_rows
