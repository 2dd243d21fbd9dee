"""Ranked rows turned into answers, and the two single-source candidate generators.

``similar`` and ``search`` rank one query vector's neighbours; the recommend fallback ranks the
popularity order. Both go through the same re-ranking stages as recommendations (crowding,
boosts...), so they are built here as generators for :class:`~engine.ranking.Ranker`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from engine.ann import Searcher
from engine.bundle import Bundle
from engine.explain import Reason
from engine.results import ScoredItem
from engine.strategies import Candidates


def scored_item(
    bundle: Bundle, row: int, score: float, reasons: tuple[Reason, ...] = ()
) -> ScoredItem:
    """The catalogue record at ``row`` with its score; a non-finite score is reported as 0."""
    record = bundle.item_record(row)
    item_id = str(record.pop("id"))
    text = str(record.pop("text"))
    if score != score or math.isinf(score):
        score = 0.0
    return ScoredItem(id=item_id, score=score, text=text, metadata=record, reasons=reasons)


def ranked_items(
    bundle: Bundle, ranked: Candidates | None, reasons: list[tuple[Reason, ...]] | None = None
) -> tuple[ScoredItem, ...]:
    """The items of a ranking, best first; ``reasons`` (one tuple per item) with explain."""
    assert ranked is not None  # only a fused recommend generator gives up, and not through here
    why = reasons if reasons is not None else [()] * len(ranked)
    return tuple(
        scored_item(bundle, int(row), float(score), because)
        for row, score, because in zip(ranked.rows, ranked.scores, why, strict=True)
    )


def item_label(bundle: Bundle, row: int) -> str:
    """A short human name of the item at ``row``: its title or name, else its text."""
    record = bundle.item_record(row)
    for key in ("title", "name"):
        if isinstance(record.get(key), str) and record[key]:
            return str(record[key])
    return str(record["text"])[:80]


def vector_candidates(
    searcher: Searcher, query: np.ndarray, allowed: np.ndarray | None
) -> Callable[[int], Candidates]:
    """Candidates of one ``float32 (d,)`` query vector, ``pool`` at a time."""

    def generate(pool: int) -> Candidates:
        scores, rows = searcher.search(query[None, :], pool, allowed)
        keep = rows[0] >= 0
        return Candidates(rows[0][keep], scores[0][keep], query)

    return generate


def popularity_order(bundle: Bundle) -> np.ndarray | None:
    """``int64 (n,)`` rows, most popular first; None when the bundle has no popularity."""
    if bundle.popularity is None:
        return None
    # Ties keep catalogue order so answers are deterministic.
    return np.argsort(-bundle.popularity, kind="stable")


def popular_candidates(
    bundle: Bundle, order: np.ndarray, allowed: np.ndarray | None
) -> tuple[Callable[[int], Candidates], int]:
    """The most popular allowed rows (``order`` from :func:`popularity_order`) as a generator,
    and how many rows are allowed."""
    popularity = bundle.popularity
    assert popularity is not None
    rows = order if allowed is None else order[allowed[order]]

    def generate(pool: int) -> Candidates:
        chosen = rows[:pool]
        # Scores are the popularity counts; the order is the ranking (merged=True).
        return Candidates(chosen, popularity[chosen].astype(np.float32), merged=True)

    return generate, len(rows)
