"""The common bulk request answered for a whole chunk with array operations, no per-user loop.

The request most nightly jobs make (the ``mean`` strategy, no re-ranking stage but the exact
re-score, no explanations) needs nothing per user that an array operation over the chunk cannot
do: the queries (:mod:`engine.bulk.chunk_model`), and one exact scan that leaves out each user's
own history (:mod:`engine.bulk.scan`). Its scores are exact inner products, as the online exact
re-score computes them, so they need no second scoring. ``tests/test_bulk_fast.py`` holds this
path to the per-user one (:mod:`engine.bulk.batch`, itself held to
:meth:`Recommender.recommend`). Users without a liked known item (the popularity fallback) are
left to the per-user path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.ann import Searcher
from engine.bulk.chunk_model import ChunkHistory, chunk_mean_queries
from engine.bulk.scan import ScanRows, masked_top_k
from engine.usermodel import UserModelConfig


@dataclass(frozen=True)
class ChunkRequest:
    """What every user of the chunk gets: ``rows`` are the rows every user may get (filters,
    ``exclude``, tombstones), in the scan's order."""

    k: int
    rows: ScanRows
    exclude_seen: bool
    model: UserModelConfig


@dataclass(frozen=True)
class ChunkAnswer:
    """Ranked answers of the users the chunk-wide path answered, flattened in user then rank
    order: ``users`` ``int64 (r,)`` positions in the chunk, ``rows`` ``int64 (r,)``, ``scores``
    ``float32 (r,)``; ``answered`` ``bool (n,)`` marks them (the rest go the per-user way)."""

    users: np.ndarray
    rows: np.ndarray
    scores: np.ndarray
    answered: np.ndarray


def answer_chunk(searcher: Searcher, history: ChunkHistory, request: ChunkRequest) -> ChunkAnswer:
    """Answer every user of ``history`` with a liked known item (the rest: the per-user path).

    ``searcher`` must be one whose online answers are exact (a Flat index, or an allowed set
    small enough to be scanned exactly): the scan here is exact.
    """
    n = history.n_users
    queries, has_query = chunk_mean_queries(history, searcher.vectors, request.model)
    planned = np.flatnonzero(has_query)
    if len(planned) == 0:
        none = np.zeros(0, np.int64)
        return ChunkAnswer(none, none, np.zeros(0, np.float32), has_query)
    if request.exclude_seen:
        position = np.full(n, -1, dtype=np.int64)
        position[planned] = np.arange(len(planned))
        masked_queries = position[history.users]
        mine = masked_queries >= 0
        masked_queries, masked_rows = masked_queries[mine], history.rows[mine]
    else:
        masked_queries = masked_rows = np.zeros(0, np.int64)
    k = min(request.k, len(searcher.vectors))
    scores, rows = masked_top_k(
        searcher.vectors, queries[planned], k, request.rows, masked_queries, masked_rows
    )
    found = rows >= 0
    return ChunkAnswer(
        np.broadcast_to(planned[:, None], rows.shape)[found],
        rows[found],
        scores[found],
        has_query,
    )
