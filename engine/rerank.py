"""Re-ranking of candidates, in a fixed documented order; every stage is optional.

1. ``exact``: re-score with the stored full-precision vectors against the query. Matters for
   PQ/SQ indexes, whose scores are approximate; a no-op in effect for Flat and HNSW-Flat.
2. ``cross_encoder``: a text re-ranker (query text, item text) replaces the scores, for requests
   with interests text; see :mod:`engine.rerankers`.
3. ``boosts``: numeric metadata (popularity, year...) raises a score by a bounded factor:
   ``score' = rel · m`` with ``rel = (score + 1) / 2`` in ``[0, 1]`` and
   ``m = 1 + min(Σ weight_f · norm_f(item), max_boost - 1)``, where ``norm_f`` is the item's
   percentile rank of field f in the catalogue (or min-max). No boost can lift an item by more
   than ``max_boost``×, so it cannot overturn relevance beyond that factor.
4. ``mmr``: maximal marginal relevance (Carbonell & Goldstein): pick next the candidate with the
   largest ``λ · rel(c) - (1 - λ) · max_{s chosen} cos(c, s)``. λ = 1 is pure relevance order;
   lowering λ trades relevance for diversity.
5. ``crowding``: at most ``max_per_value`` results share a value of a metadata field (for a list
   field, each of its values counts), Vertex AI's and Vespa's "diversity by attribute".

Stages 3–5 need more candidates than ``k`` to choose from: the recommender fetches a pool of
``pool_factor × k`` (and more when crowding leaves the list short).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from engine.errors import InvalidArgument
from engine.strategies import Candidates

Transform = Literal["rank", "minmax"]


@dataclass(frozen=True)
class Boost:
    """Raise scores by ``weight · norm(field)``; ``norm`` in [0, 1] over the catalogue."""

    field: str
    weight: float
    transform: Transform = "rank"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and 0 <= self.weight <= 10):
            raise InvalidArgument(
                f"boost weight for {self.field!r} must be in [0, 10]", field="rerank.boosts"
            )
        if self.transform not in ("rank", "minmax"):
            raise InvalidArgument("boost transform must be rank or minmax", field="rerank.boosts")


@dataclass(frozen=True)
class Crowding:
    """At most ``max_per_value`` results share one value of ``field``."""

    field: str
    max_per_value: int

    def __post_init__(self) -> None:
        if self.max_per_value < 1:
            raise InvalidArgument("crowding max_per_value must be >= 1", field="rerank.crowding")


@dataclass(frozen=True)
class RerankConfig:
    """Which stages run. The defaults change nothing but exact re-scoring."""

    exact: bool = True
    cross_encoder: bool = False
    boosts: tuple[Boost, ...] = ()
    max_boost: float = 1.2
    mmr_lambda: float | None = None
    crowding: Crowding | None = None
    pool_factor: int = 4

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_boost) and 1.0 <= self.max_boost <= 10.0):
            raise InvalidArgument("max_boost must be in [1, 10]", field="rerank.max_boost")
        if self.mmr_lambda is not None and not (0.0 <= self.mmr_lambda <= 1.0):
            raise InvalidArgument("mmr_lambda must be in [0, 1]", field="rerank.mmr_lambda")
        if not 1 <= self.pool_factor <= 50:
            raise InvalidArgument("pool_factor must be in [1, 50]", field="rerank.pool_factor")

    @property
    def needs_pool(self) -> bool:
        return (
            bool(self.boosts)
            or self.mmr_lambda is not None
            or self.crowding is not None
            or self.cross_encoder
        )


@dataclass
class RerankContext:
    """What the stages read: stored vectors, per-field values, and the optional text scorer."""

    vectors: np.ndarray
    boost_values: Callable[[str, Transform], np.ndarray]  # field → float64 (n,) in [0, 1]
    field_codes: Callable[[str], FieldCodes]
    text_scores: Callable[[Sequence[int]], np.ndarray] | None = None  # rows → cross-encoder scores
    trace: dict[str, float] = field(default_factory=dict)


def exact_rescore(c: Candidates, vectors: np.ndarray) -> Candidates:
    if c.query is None or len(c) == 0:
        return c
    scores = np.asarray(vectors[c.rows], dtype=np.float32) @ c.query
    order = np.argsort(-scores, kind="stable")
    return Candidates(c.rows[order], scores[order].astype(np.float32), c.query)


def boost_multipliers(rows: np.ndarray, config: RerankConfig, ctx: RerankContext) -> np.ndarray:
    """``float64 (m,)`` multipliers in ``[1, max_boost]``."""
    total = np.zeros(len(rows))
    for boost in config.boosts:
        total += boost.weight * ctx.boost_values(boost.field, boost.transform)[rows]
    return 1.0 + np.minimum(total, config.max_boost - 1.0)


def apply_boosts(c: Candidates, config: RerankConfig, ctx: RerankContext) -> Candidates:
    relevance = (np.clip(c.scores.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0
    boosted = relevance * boost_multipliers(c.rows, config, ctx)
    order = np.argsort(-boosted, kind="stable")
    return Candidates(c.rows[order], boosted[order].astype(np.float32), c.query)


@dataclass(frozen=True)
class FieldCodes:
    """A field's values as integer codes, CSR-style: row r holds ``codes[indptr[r]:indptr[r+1]]``."""

    indptr: np.ndarray
    codes: np.ndarray
    n_values: int


class _Cap:
    """Crowding over one candidate list: which positions a choice blocks once a value is full."""

    def __init__(self, crowding: Crowding, field: FieldCodes, rows: np.ndarray) -> None:
        self.limit = crowding.max_per_value
        starts, ends = field.indptr[rows], field.indptr[rows + 1]
        lengths = ends - starts
        # (candidate position, value code) pairs of the whole list, gathered without a loop.
        self.pair_pos = np.repeat(np.arange(len(rows)), lengths)
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        self.pair_code = field.codes[np.arange(int(lengths.sum())) + offsets]
        self.counts = np.zeros(field.n_values, dtype=np.int64)

    def take(self, position: int) -> np.ndarray:
        """Count the candidate at ``position``; return the positions its full values now block."""
        mine = self.pair_code[self.pair_pos == position]
        self.counts[mine] += 1
        full = mine[self.counts[mine] >= self.limit]
        if full.size == 0:
            return np.zeros(0, dtype=np.int64)
        return self.pair_pos[np.isin(self.pair_code, full)]


def mmr(
    c: Candidates, k: int, lam: float, vectors: np.ndarray, cap: _Cap | None = None
) -> Candidates:
    """Greedy MMR choice of at most ``k`` candidates (scores kept as relevance).

    With ``cap``, a crowding value that reaches its limit removes its other candidates from the
    choice. Each step costs one (pool × d) product: O(k · pool · d) in all, not O(pool²).
    """
    if len(c) == 0:
        return c
    v = np.asarray(vectors[c.rows], dtype=np.float32)
    relevance = c.scores.astype(np.float64)
    redundancy = np.zeros(len(c))
    available = np.ones(len(c), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < k and available.any():
        value = np.where(available, lam * relevance - (1.0 - lam) * redundancy, -np.inf)
        i = int(np.argmax(value))
        available[i] = False
        if cap is not None:
            available[cap.take(i)] = False
        # The first choice has no redundancy; every later one is judged against all chosen.
        redundancy = np.maximum(redundancy, v @ v[i]) if chosen else v @ v[i]
        chosen.append(i)
    order = np.asarray(chosen, dtype=np.int64)
    return Candidates(c.rows[order], c.scores[order], c.query)


def crowd(c: Candidates, k: int, crowding: Crowding, values: FieldCodes) -> Candidates:
    """Keep candidates in order while no value of the field exceeds its cap; at most ``k``."""
    cap = _Cap(crowding, values, c.rows)
    blocked = np.zeros(len(c), dtype=bool)
    keep: list[int] = []
    for position in range(len(c)):
        if blocked[position]:
            continue
        keep.append(position)
        blocked[cap.take(position)] = True
        if len(keep) == k:
            break
    idx = np.asarray(keep, dtype=np.int64)
    return Candidates(c.rows[idx], c.scores[idx], c.query)


def rerank(c: Candidates, k: int, config: RerankConfig, ctx: RerankContext) -> Candidates:
    """Run the configured stages in order; the result holds at most ``k`` candidates."""
    if config.exact:
        c = exact_rescore(c, ctx.vectors)
    if config.cross_encoder and ctx.text_scores is not None and len(c):
        scores = np.asarray(ctx.text_scores(c.rows.tolist()), dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        c = Candidates(c.rows[order], scores[order], c.query)
    if config.boosts:
        c = apply_boosts(c, config, ctx)
    values = ctx.field_codes(config.crowding.field) if config.crowding is not None else None
    if config.mmr_lambda is not None:
        cap = None
        if config.crowding is not None and values is not None:
            cap = _Cap(config.crowding, values, c.rows)
        return mmr(c, k, config.mmr_lambda, ctx.vectors, cap)
    if config.crowding is not None and values is not None:
        return crowd(c, k, config.crowding, values)
    return Candidates(c.rows[:k], c.scores[:k], c.query)
