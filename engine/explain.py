"""Why an item was recommended: which liked history items (or the interests) brought it.

An item's pull from liked item i is ``strength_i · cos(item, v_i)`` (strength: weight × recency),
and from the interests ``interest_weight · cos(item, interests)``. The reasons are the largest
positive pulls, each with its share of the item's total positive pull.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.usermodel import UserModelConfig, UserSignal

MAX_REASONS = 2


@dataclass(frozen=True)
class Reason:
    """``kind`` is "item" (``item_id`` set) or "interests"; ``share`` in (0, 1]."""

    kind: str
    share: float
    similarity: float
    item_id: str | None = None
    label: str | None = None  # the history item's title, for "because you liked ..."


def explain(
    rows: np.ndarray,
    vectors: np.ndarray,
    signal: UserSignal,
    config: UserModelConfig,
    ids: np.ndarray,
    label: Callable[[int], str] | None = None,
) -> list[tuple[Reason, ...]]:
    """Reasons for each of ``rows`` (result rows in ``vectors``); ``ids`` maps rows to item ids."""
    if len(rows) == 0:
        return []
    items = np.asarray(vectors[rows], dtype=np.float32)
    sources = [signal.liked_vectors]
    # Relative to the strongest, as the strategies weigh them: scaling every rating by the same
    # factor changes no ranking, so it must change no explanation either.
    liked = signal.liked_strength
    strength = [liked / liked.max() * config.like_weight if len(liked) else liked]
    if signal.interest is not None:
        sources.append(signal.interest[None, :])
        strength.append(np.array([config.interest_weight]))
    source_vectors = (
        np.vstack([s for s in sources if len(s)]) if any(len(s) for s in sources) else None
    )
    if source_vectors is None:
        return [() for _ in rows]
    weights = np.concatenate(strength)
    sims = items @ source_vectors.T
    pull = np.maximum(sims * weights[None, :], 0.0)
    n_liked = len(signal.liked_rows)
    out: list[tuple[Reason, ...]] = []
    for r in range(len(rows)):
        total = pull[r].sum()
        if total <= 0:
            out.append(())
            continue
        top = np.argsort(-pull[r], kind="stable")[:MAX_REASONS]
        reasons = []
        for j in top:
            if pull[r, j] <= 0:
                continue
            share = float(pull[r, j] / total)
            if j < n_liked:
                row = int(signal.liked_rows[j])
                name = label(row) if label is not None else None
                reasons.append(Reason("item", share, float(sims[r, j]), str(ids[row]), name))
            else:
                reasons.append(Reason("interests", share, float(sims[r, j])))
        out.append(tuple(reasons))
    return out
