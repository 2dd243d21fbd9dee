"""Recommendations for a chunk of users at once: the online pipeline with one batched search.

Per user it runs what :meth:`Recommender.recommend` runs: the history through the same user
model, the allowed mask through :meth:`Recommender.allowed_rows`, the strategy through
:mod:`engine.strategies` and the re-ranking stages through the recommender's
:class:`~engine.ranking.Ranker`. Only the nearest-neighbour search differs: every user's planned
queries go through one search per chunk (:mod:`engine.bulk.prefetch`). Users with nothing usable
(no known liked item) are answered by :meth:`Recommender.recommend` itself: the popularity
fallback.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine import hybrid
from engine.ann import EXACT_SCAN_MAX_ROWS, Searcher, is_exact
from engine.bulk.batches import UserBatch
from engine.bulk.chunk_model import ChunkHistory
from engine.bulk.fast import ChunkRequest, answer_chunk
from engine.bulk.prefetch import (
    Plan,
    PrefetchedSearcher,
    answers_exactly,
    batch_search,
    plan_candidates,
    plan_queries,
    prefetch_depth,
)
from engine.bulk.scan import scan_rows
from engine.errors import InvalidArgument
from engine.explain import explain
from engine.extras import parts_of
from engine.filters import Filter
from engine.recommender import Recommender
from engine.results import QueryOptions
from engine.usermodel import UserModelConfig, UserSignal, user_signal


@dataclass(frozen=True)
class BulkRequest:
    """The request every user gets: the options of ``POST /recommend`` but the history."""

    k: int = 10
    options: QueryOptions = field(default_factory=QueryOptions)
    filters: tuple[Filter, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_seen: bool = True
    user_model: UserModelConfig | None = None

    def describe(self) -> dict[str, object]:
        """A JSON-able description (the job manifest compares it on ``--resume``)."""
        return json.loads(json.dumps(asdict(self), default=str))


@dataclass
class ChunkStats:
    users: int = 0
    rows: int = 0
    popular: int = 0  # users answered by the popularity fallback
    fallbacks: int = 0  # searches answered one user at a time
    unknown: int = 0  # history entries the bundle does not hold
    vectorised: int = 0  # users answered by the chunk-wide path (engine/bulk/fast.py)

    def add(self, other: ChunkStats) -> None:
        for name in stat_fields():
            setattr(self, name, getattr(self, name) + getattr(other, name))


def stat_fields() -> tuple[str, ...]:
    """The counters of :class:`ChunkStats`, in order."""
    return tuple(f.name for f in fields(ChunkStats))


@dataclass(frozen=True)
class _User:
    """One user of a chunk, ready to answer: ``excluded`` counts its own excluded rows."""

    signal: UserSignal
    plan: Plan | None
    allowed: np.ndarray | None
    eligible: int
    excluded: int


SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float32()),
    ]
)
EXPLAINED_SCHEMA = SCHEMA.append(pa.field("explanation", pa.string()))


class BatchRecommender:
    """Answers :class:`UserBatch` chunks with one request for every user."""

    def __init__(self, recommender: Recommender, request: BulkRequest) -> None:
        self.rec = recommender
        self.request = request
        max_k = recommender.config.max_k
        k = request.k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
            raise InvalidArgument(f"k must be an integer from 1 to {max_k}", field="k")
        self.model = request.user_model or recommender.config.user_model
        recommender.ranker.validate(request.options.rerank)
        bundle = recommender.bundle
        self.exclude_rows = [
            r for r in (bundle.row_of.get(str(i)) for i in request.exclude) if r is not None
        ]
        # Raises on a bad filter before any user is read.
        self.shared, self.shared_eligible = recommender.allowed_rows(
            list(request.filters), list(self.exclude_rows)
        )
        self.pool = recommender.ranker.pool_size(k, request.options.rerank)
        # Worth a batched search when the users' own searches can be exact scans (the users'
        # masks are within the shared one); each user is checked again.
        self.batched = is_exact(recommender.searcher.index) or (
            self.shared_eligible <= EXACT_SCAN_MAX_ROWS
        )
        options = request.options
        # A fused request (hybrid, the default on a bundle with collaborative vectors;
        # collaborative; explicit fusion weights) ranks by several signals: each user then goes
        # through the online recommender itself, which answers it. Raises on a mode the bundle
        # cannot serve before any user is read.
        mode = hybrid.resolve_mode(options.mode, parts_of(bundle))
        self.fused = any(
            hybrid.recommend_weights(mode, options.fusion, has) is not None for has in (True, False)
        )
        # The request most jobs make is answered for the whole chunk at once (engine/bulk/fast.py).
        self.chunk_request = (
            ChunkRequest(
                k,
                scan_rows(recommender.searcher.vectors, self.shared),
                request.exclude_seen,
                self.model,
            )
            if self.batched
            and not self.fused
            and options.strategy == "mean"
            and not options.explain
            and not options.rerank.needs_pool
            else None
        )
        self.schema = EXPLAINED_SCHEMA if request.options.explain else SCHEMA
        self._known_ids: pa.Array | None = None  # the live ids, for Arrow's vectorised lookup
        self._known_rows = np.zeros(0, dtype=np.int64)
        self._item_ids: pa.Array | None = None  # every row's id, for Arrow's take

    def _rows(self, items: pa.Array) -> np.ndarray:
        """``int64 (e,)`` bundle rows of item ids, -1 for ids the bundle does not hold (or deleted)."""
        if self._known_ids is None:
            row_of = self.rec.bundle.row_of
            self._known_ids = pa.array(list(row_of), type=pa.string())
            self._known_rows = np.fromiter(row_of.values(), dtype=np.int64, count=len(row_of))
        position = pc.index_in(items, value_set=self._known_ids)
        found = position.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.where(found >= 0, self._known_rows[np.maximum(found, 0)], -1)

    def recommend(self, batch: UserBatch) -> tuple[pa.Table, ChunkStats]:
        """The chunk's answers as a table (``user_id, rank, item_id, score[, explanation]``)."""
        self._check_history_lengths(batch)
        rows_all = self._rows(batch.items)
        stats = ChunkStats(users=len(batch), unknown=int(np.count_nonzero(rows_all < 0)))
        user_col: list[np.ndarray] = []
        rank_col: list[np.ndarray] = []
        row_col: list[np.ndarray] = []
        score_col: list[np.ndarray] = []
        explain_col: list[str] = []
        rest = list(range(len(batch)))
        if self.chunk_request is not None:
            history = ChunkHistory.from_offsets(
                batch.offsets, rows_all, batch.weights, batch.timestamps
            )
            fast = answer_chunk(self.rec.searcher, history, self.chunk_request)
            stats.vectorised = int(fast.answered.sum())
            rest = np.flatnonzero(~fast.answered).tolist()
            user_col.append(fast.users)
            rank_col.append(_ranks(fast.users))
            row_col.append(fast.rows)
            score_col.append(fast.scores)
        if self.fused:  # nothing batched: no signal or plan to prepare
            answered = (self._online(batch, u, stats) for u in rest)
        else:
            users = [self._prepare(batch, u, rows_all) for u in rest]
            prefetched = self._prefetch(users)
            answered = (
                self._answer(batch, u, user, block, stats)
                for u, user, block in zip(rest, users, prefetched, strict=True)
            )
        for u, (rows, scores, reasons) in zip(rest, answered, strict=True):
            n = len(rows)
            user_col.append(np.full(n, u, dtype=np.int64))
            rank_col.append(np.arange(1, n + 1, dtype=np.int32))
            row_col.append(rows)
            score_col.append(scores)
            explain_col.extend(reasons)
        return self._table(batch, user_col, rank_col, row_col, score_col, explain_col), stats

    def _check_history_lengths(self, batch: UserBatch) -> None:
        limit = self.rec.config.max_history
        long = np.flatnonzero(np.diff(batch.offsets) > limit)
        if len(long):
            u = int(long[0])
            raise InvalidArgument(
                f"user {batch.user_ids[u]!r}: history has "
                f"{int(batch.offsets[u + 1] - batch.offsets[u])} entries; the limit is {limit}",
                field="history",
            )

    def _prepare(self, batch: UserBatch, u: int, rows_all: np.ndarray) -> _User:
        """User ``u``'s signal, mask and planned queries, as :meth:`Recommender.recommend` has them."""
        rec, request = self.rec, self.request
        s, e = int(batch.offsets[u]), int(batch.offsets[u + 1])
        rows = rows_all[s:e]
        known = rows >= 0
        known_rows = rows[known].tolist()
        excluded = list(self.exclude_rows)
        if request.exclude_seen:
            excluded.extend(known_rows)
        allowed, eligible = rec.allowed_rows(list(request.filters), excluded)
        signal = user_signal(
            known_rows,
            np.asarray(rec.bundle.vectors[known_rows], dtype=np.float32),
            batch.weights[s:e][known].tolist(),
            [None if math.isnan(t) else float(t) for t in batch.timestamps[s:e][known]],
            None,
            self.model,
        )
        options = request.options
        plan = (
            plan_queries(options.strategy, signal, self.model, options.max_interests)
            if signal.has_positive
            else None
        )
        return _User(signal, plan, allowed, eligible, len(known_rows) * request.exclude_seen)

    def _answer(
        self,
        batch: UserBatch,
        u: int,
        user: _User,
        block: tuple[np.ndarray, np.ndarray] | None,
        stats: ChunkStats,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """User ``u``'s ranked rows ``int64 (r,)``, scores ``float32 (r,)`` and explanations."""
        rec, options = self.rec, self.request.options
        searcher = PrefetchedSearcher(
            rec.searcher,
            None if user.plan is None else user.plan.queries,
            None if block is None else block[0],
            None if block is None else block[1],
            self.batched and answers_exactly(rec.searcher, user.allowed, user.eligible),
        )
        ranked = None
        if user.plan is not None:
            generate = partial(
                plan_candidates,
                user.plan,
                user.signal,
                self.model,
                cast(Searcher, searcher),
                allowed=user.allowed,
                max_interests=options.max_interests,
            )
            ranked = rec.ranker.rank(
                lambda pool: generate(pool=pool), self.request.k, options.rerank, user.eligible
            )
        stats.fallbacks += searcher.fallbacks
        if ranked is None:
            return self._online(batch, u, stats)
        reasons = []
        if options.explain:
            why = explain(
                ranked.rows, rec.bundle.vectors, user.signal, self.model, rec.bundle.ids, rec.label
            )
            reasons = [json.dumps([asdict(r) for r in w], ensure_ascii=False) for w in why]
        return ranked.rows.astype(np.int64), ranked.scores.astype(np.float32), reasons

    def _prefetch(self, users: list[_User]) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Each planned user's slice of one batched search (None: not planned or not batched)."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(users)
        plans = {u: user.plan for u, user in enumerate(users) if user.plan is not None}
        if not self.batched or not plans:
            return out
        queries = np.concatenate([plan.queries for plan in plans.values()])
        depth = prefetch_depth(
            self.pool, [users[u].excluded for u in plans], len(self.rec.bundle.vectors)
        )
        scores, rows = batch_search(self.rec.searcher, queries, depth, self.shared)
        start = 0
        for u, plan in plans.items():
            m = len(plan.queries)
            out[u] = (scores[start : start + m], rows[start : start + m])
            start += m
        return out

    def _online(
        self, batch: UserBatch, u: int, stats: ChunkStats
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """User ``u`` through :meth:`Recommender.recommend`: rows, scores and explanations (with
        ``explain``); ``stats`` counts the popularity fallback."""
        request = self.request
        results = self.rec.recommend(
            batch.history(u),
            None,
            request.k,
            exclude=request.exclude,
            filters=request.filters,
            exclude_seen=request.exclude_seen,
            user_model=request.user_model,
            options=request.options,
        )
        rows = np.asarray([self.rec.bundle.row_of[i.id] for i in results.items], dtype=np.int64)
        scores = np.asarray([i.score for i in results.items], dtype=np.float32)
        reasons = (
            [json.dumps([asdict(r) for r in i.reasons], ensure_ascii=False) for i in results.items]
            if request.options.explain
            else []
        )
        stats.popular += results.source == "popularity"
        return rows, scores, reasons

    def _table(
        self,
        batch: UserBatch,
        user_col: list[np.ndarray],
        rank_col: list[np.ndarray],
        row_col: list[np.ndarray],
        score_col: list[np.ndarray],
        explain_col: list[str],
    ) -> pa.Table:
        users = np.concatenate(user_col) if user_col else np.zeros(0, np.int64)
        rows = np.concatenate(row_col) if row_col else np.zeros(0, np.int64)
        scores = np.concatenate(score_col) if score_col else np.zeros(0, np.float32)
        ranks = np.concatenate(rank_col) if rank_col else np.zeros(0, np.int32)
        # The chunk-wide answers come first: back to user order (each user's ranks stay in order).
        if len(row_col) > 1:
            order = np.argsort(users, kind="stable")
            users, rows, scores, ranks = users[order], rows[order], scores[order], ranks[order]
            explain_col = [explain_col[i] for i in order] if explain_col else explain_col
        # As the API answers: a score that is not a finite number is 0.
        scores = np.where(np.isfinite(scores), scores, np.float32(0.0)).astype(np.float32)
        if self._item_ids is None:  # Arrow takes ids by row without a Python string each
            self._item_ids = pa.array(self.rec.bundle.ids, type=pa.string())
        columns = [
            pa.array(batch.user_ids, type=pa.string()).take(pa.array(users)),
            pa.array(ranks),
            self._item_ids.take(pa.array(rows)),
            pa.array(scores),
        ]
        if self.request.options.explain:
            columns.append(pa.array(explain_col, type=pa.string()))
        return pa.Table.from_arrays(columns, schema=self.schema)


def _ranks(users: np.ndarray) -> np.ndarray:
    """``int32 (r,)`` 1-based ranks of entries grouped by user, in order, from their ``users``."""
    if len(users) == 0:
        return np.zeros(0, np.int32)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    lengths = np.diff(np.r_[starts, len(users)])
    return (np.arange(len(users)) - np.repeat(starts, lengths) + 1).astype(np.int32)
