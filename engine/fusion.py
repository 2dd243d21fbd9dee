"""The fusion rule: several signals' scores over one candidate set → one ranking.

For candidates ``i`` and signals ``s`` (content, collaborative, popularity, lexical) with weights
``w_s >= 0``::

    fused(i) = Σ_{s available for i} w_s · norm_s(i)  /  Σ_{s available for i} w_s

``norm_s`` is min-max over the candidate set, so every signal reads on [0, 1] whatever its raw
scale (cosines, fold-in dot products, BM25, log-popularity). A signal is *unavailable* for an
item that cannot have it (no collaborative vector: an item with no training interactions or one
added by a live update; no lexical score: a row added after the BM25 index was built): that item
is scored by the weighted mean of the signals it has, so new items still compete through
content. A score of 0 (no shared word, popularity 0) is a value, not a missing one.

Weights are per request (``QueryOptions.fusion``); the defaults were tuned on the MovieLens
validation split and SciFact's train queries (bench/RESULTS.md, issue 9).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidArgument

SIGNALS = ("content", "collaborative", "popularity", "lexical")
MODES = ("content", "collaborative", "hybrid")


@dataclass(frozen=True)
class FusionWeights:
    """Weight of each signal in :func:`fuse` (0 turns a signal off)."""

    content: float = 1.0
    collaborative: float = 0.0
    popularity: float = 0.0
    lexical: float = 0.0

    def __post_init__(self) -> None:
        for name in SIGNALS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 100):
                raise InvalidArgument(f"fusion weight {name} must be in [0, 100]", field="fusion")
        if not any(getattr(self, name) > 0 for name in SIGNALS):
            raise InvalidArgument("at least one fusion weight must be > 0", field="fusion")

    def of(self, name: str) -> float:
        return float(getattr(self, name))


def minmax(values: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """``float64 (m,)`` in [0, 1] over the ``present`` entries (others: 0); constant → 1."""
    out = np.zeros(len(values), dtype=np.float64)
    mask = np.ones(len(values), dtype=bool) if present is None else present
    if not mask.any():
        return out
    x = values[mask].astype(np.float64)
    low, high = float(x.min()), float(x.max())
    out[mask] = (x - low) / (high - low) if high > low else 1.0
    return out


def fuse(
    signals: Mapping[str, tuple[np.ndarray, np.ndarray | None]], weights: FusionWeights
) -> np.ndarray:
    """``float64 (m,)`` fused scores of ``m`` candidates.

    ``signals`` maps a signal name to its raw scores ``(m,)`` and availability ``bool (m,)``
    (None: available for all). Signals with weight 0 or absent from the mapping are ignored.
    """
    total: np.ndarray | None = None
    mass: np.ndarray | None = None
    for name, (raw, present) in signals.items():
        weight = weights.of(name)
        if weight <= 0:
            continue
        available = np.ones(len(raw), dtype=bool) if present is None else present
        part = weight * minmax(raw, available)
        total = part if total is None else total + part
        share = weight * available
        mass = share if mass is None else mass + share
    if total is None or mass is None:
        raise InvalidArgument("no signal with a positive weight is available", field="fusion")
    return np.divide(total, mass, out=np.zeros_like(total), where=mass > 0)
