"""From a user's history and interests to one query vector.

The query is a Rocchio-style mix of unit vectors::

    q = normalise( like_weight     * normalise(Σ w_i r_i v_i / Σ w_i r_i)      liked items
                 - dislike_weight  * normalise(Σ |w_j| r_j v_j / Σ |w_j| r_j)   disliked items
                 + interest_weight * embed(interests) )

``v`` are the items' stored vectors (never re-embedded), ``w`` the event weights after subtracting
``neutral_weight`` (positive: liked, negative: disliked, zero: ignored) and ``r`` a recency factor
``max(recency_floor, 0.5 ** (age / half_life))``. Ages are measured from the newest timestamp in
the history, so offline evaluation on old logs behaves like serving live traffic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.embedder import normalize_rows
from engine.errors import InvalidArgument

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class HistoryEvent:
    """One interaction: an item id, a weight (rating, or negative for a dislike) and a time.

    ``timestamp`` is Unix seconds; None means "as recent as the newest event".
    """

    item_id: str
    weight: float = 1.0
    timestamp: float | None = None


@dataclass(frozen=True)
class UserModelConfig:
    """How history and interests mix into a query. Defaults are documented in README."""

    like_weight: float = 1.0
    dislike_weight: float = 0.5
    interest_weight: float = 1.0
    # Ratings on a 0.5-5 scale are all positive; set 3.0 to make 1-2 stars dislikes.
    neutral_weight: float = 0.0
    half_life_days: float | None = 365.0
    # Old events keep at least this share of their weight, so a long history never vanishes.
    recency_floor: float = 0.2

    def __post_init__(self) -> None:
        for name in ("like_weight", "dislike_weight", "interest_weight", "recency_floor"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"{name} must be a finite number >= 0", field=name)
        if self.recency_floor > 1:
            raise InvalidArgument("recency_floor must be <= 1", field="recency_floor")
        if self.half_life_days is not None and not (
            math.isfinite(self.half_life_days) and self.half_life_days > 0
        ):
            raise InvalidArgument("half_life_days must be > 0", field="half_life_days")


def validate_history(history: Sequence[HistoryEvent]) -> None:
    """Reject NaN or infinite weights and timestamps, naming the offending entry."""
    for position, event in enumerate(history):
        if not math.isfinite(event.weight):
            raise InvalidArgument(
                f"history[{position}].weight must be a finite number",
                field=f"history[{position}].weight",
            )
        if event.timestamp is not None and not math.isfinite(event.timestamp):
            raise InvalidArgument(
                f"history[{position}].timestamp must be a finite number",
                field=f"history[{position}].timestamp",
            )


def recency_factors(timestamps: Sequence[float | None], config: UserModelConfig) -> np.ndarray:
    """``float64 (n,)`` decay factors in ``[recency_floor, 1]``; 1 for untimed events."""
    n = len(timestamps)
    if config.half_life_days is None or n == 0:
        return np.ones(n)
    known = [t for t in timestamps if t is not None]
    if not known:
        return np.ones(n)
    newest = max(known)
    ages = np.array([0.0 if t is None else newest - t for t in timestamps]) / SECONDS_PER_DAY
    decay = np.power(0.5, ages / config.half_life_days)
    return np.maximum(decay, config.recency_floor)


@dataclass(frozen=True)
class UserSignal:
    """A user's known history and interests, ready for a query strategy.

    ``liked_vectors`` / ``disliked_vectors`` are ``float32 (n, d)`` stored item vectors; their
    ``*_strength`` are ``float64 (n,)`` positive weights (|weight - neutral| × recency).
    ``interest`` is the embedded interests text ``float32 (d,)`` or None.
    """

    liked_rows: np.ndarray
    liked_vectors: np.ndarray
    liked_strength: np.ndarray
    disliked_vectors: np.ndarray
    disliked_strength: np.ndarray
    interest: np.ndarray | None

    @property
    def has_positive(self) -> bool:
        return len(self.liked_rows) > 0 or self.interest is not None


def user_signal(
    rows: Sequence[int],
    vectors: np.ndarray,
    weights: Sequence[float],
    timestamps: Sequence[float | None],
    interest: np.ndarray | None,
    config: UserModelConfig,
) -> UserSignal:
    """Split a history into liked and disliked items with recency-decayed strengths.

    ``vectors`` is ``float32 (n, d)``: the stored vectors of ``rows``, in the same order.
    """
    w = np.asarray(weights, dtype=np.float64) - config.neutral_weight
    r = recency_factors(timestamps, config)
    liked, disliked = w > 0, w < 0
    if config.like_weight == 0:
        liked = np.zeros_like(liked)
    return UserSignal(
        liked_rows=np.asarray(rows, dtype=np.int64)[liked],
        liked_vectors=vectors[liked],
        liked_strength=(w * r)[liked],
        disliked_vectors=vectors[disliked],
        disliked_strength=(-w * r)[disliked],
        interest=interest if config.interest_weight > 0 else None,
    )


def _weighted_direction(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    if vectors.shape[0] == 0 or weights.sum() <= 0:
        return None
    mean = (weights[:, None] * vectors).sum(axis=0) / weights.sum()
    if not np.any(mean):
        return None
    return normalize_rows(mean)[0]


def mean_query(
    signal: UserSignal,
    config: UserModelConfig,
    liked: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray | None:
    """Rocchio mix of the liked mean, the interests and the disliked mean; None if no positive.

    ``liked`` overrides the liked ``(vectors, strengths)`` (one interest cluster, say).
    """
    vectors, strength = (
        liked if liked is not None else (signal.liked_vectors, signal.liked_strength)
    )
    parts = []
    positive = _weighted_direction(vectors, strength)
    if positive is not None:
        parts.append(config.like_weight * positive)
    if signal.interest is not None:
        parts.append(config.interest_weight * signal.interest)
    if not parts:
        return None
    negative = _weighted_direction(signal.disliked_vectors, signal.disliked_strength)
    if negative is not None and config.dislike_weight > 0:
        parts.append(-config.dislike_weight * negative)
    query = np.sum(parts, axis=0)
    if not np.any(query):
        return None
    return normalize_rows(query)[0]


def build_query(
    vectors: np.ndarray,
    weights: Sequence[float],
    timestamps: Sequence[float | None],
    interest: np.ndarray | None,
    config: UserModelConfig,
) -> np.ndarray | None:
    """The user's ``float32 (d,)`` unit query (the ``mean`` strategy), or None.

    ``vectors`` is ``float32 (n, d)``: the stored vectors of the known history items, in the order
    of ``weights`` and ``timestamps``. ``interest`` is the embedded interests text ``(d,)`` or None.
    """
    rows = list(range(len(weights)))
    return mean_query(user_signal(rows, vectors, weights, timestamps, interest, config), config)
