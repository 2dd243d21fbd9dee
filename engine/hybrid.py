"""Hybrid candidate generation: content, collaborative, popularity and lexical signals fused.

A request's ``mode`` (``QueryOptions.mode``) picks the signals:

* ``content``: the content strategies alone (engine/strategies.py), as before; a popularity
  prior is fused in only when the request's ``fusion`` weights ask for one.
* ``collaborative``: the user's folded-in CF vector against the items' CF vectors.
* ``hybrid`` (the default for bundles with collaborative vectors): every signal the request and
  the bundle have, fused by :func:`engine.fusion.fuse`.

Each signal retrieves its own top ``max(pool, RETRIEVE)`` among the allowed rows (content by
the request's strategy, CF by its FAISS index, popularity by count, BM25 over the interests
text); every candidate of the union is then scored exactly on every signal and fused. Items
without a CF vector (no training interaction, or added live) are scored by the signals they
have, so they still come back through content.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.ann import Searcher
from engine.bundle import Bundle
from engine.collaborative import CollaborativeModel
from engine.errors import InvalidArgument
from engine.extras import Parts, parts_of, popularity_prior
from engine.fusion import FusionWeights, fuse
from engine.results import QueryOptions
from engine.strategies import Candidates, candidates, positive_probes
from engine.usermodel import UserModelConfig, UserSignal, recency_factors

# Candidates each signal contributes to the union before fusion.
RETRIEVE = 100

# Tuned on the MovieLens validation split (bench/hybrid.py; bench/RESULTS.md, issue 9). BM25
# weighs what content does: the 1:1 ratio chosen for search on SciFact's train queries.
HYBRID_WEIGHTS = FusionWeights(content=0.2, collaborative=1.0, popularity=0.4, lexical=0.2)
# A user with interests text and no usable history: the text leads, popularity breaks ties.
INTERESTS_WEIGHTS = FusionWeights(content=1.0, popularity=0.2, lexical=1.0)
# Text search: dense + BM25, chosen on SciFact's train queries (nDCG@10 0.660 dense alone,
# 0.738 at 1:1; test: 0.645 → 0.732).
SEARCH_WEIGHTS = FusionWeights(content=1.0, lexical=1.0)
COLLABORATIVE_WEIGHTS = FusionWeights(content=0.0, collaborative=1.0)
# Content with a popularity prior (no CF): what a bundle without interactions data can't do,
# measured against "most popular" (bench/RESULTS.md).
CONTENT_POPULARITY = FusionWeights(content=1.0, popularity=4.0)

Generator = Callable[[int], Candidates | None]


def resolve_mode(mode: str | None, parts: Parts, *, search: bool = False) -> str:
    """The mode a request runs in: its own, or the bundle's default."""
    if mode is None:
        if search:
            return "hybrid" if parts.lexical is not None else "content"
        return "hybrid" if parts.collaborative is not None else "content"
    if mode == "collaborative":
        if search:
            raise InvalidArgument("search has no collaborative mode", field="mode")
        if parts.collaborative is None:
            raise InvalidArgument(
                "this index has no collaborative vectors (build it with --interactions)",
                field="mode",
            )
    return mode


def recommend_weights(
    mode: str, fusion: FusionWeights | None, has_history: bool
) -> FusionWeights | None:
    """The fusion weights of a recommendation, or None for the plain content path."""
    if fusion is not None:
        return fusion
    if mode == "hybrid":
        return HYBRID_WEIGHTS if has_history else INTERESTS_WEIGHTS
    if mode == "collaborative":
        return COLLABORATIVE_WEIGHTS
    return None


def _top(scores: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
    """Rows of the ``k`` largest positive ``scores`` (``(rows,)``) among ``allowed``."""
    scores = scores.astype(np.float64, copy=True)
    if allowed is not None:
        scores[~allowed[: len(scores)]] = -np.inf
    scores[scores <= 0] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")].astype(np.int64)


def _popular_rows(bundle: Bundle, k: int, allowed: np.ndarray | None) -> np.ndarray:
    prior = popularity_prior(bundle)
    if prior is None:
        return np.zeros(0, dtype=np.int64)
    order = bundle.extras.get("popular_order")
    if order is None or len(order) != len(prior):
        order = np.argsort(-prior, kind="stable")
        bundle.extras["popular_order"] = order
    if allowed is not None:
        order = order[allowed[order]]
    return np.asarray(order[:k], dtype=np.int64)


def content_scores(
    signal: UserSignal, config: UserModelConfig, vectors: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """``float64 (m,)``: each row's best strength-weighted cosine to a liked item or the
    interests, less the disliked items' pull (the ``best_score`` strategy's score)."""
    probes, strength = positive_probes(signal, config)
    cand = np.asarray(vectors[rows], dtype=np.float32)
    if len(probes) == 0:
        return np.zeros(len(rows))
    scores = (cand @ probes.T * strength[None, :]).max(axis=1).astype(np.float64)
    if len(signal.disliked_vectors) and config.dislike_weight > 0:
        rel = signal.disliked_strength / signal.disliked_strength.max()
        negative = (cand @ signal.disliked_vectors.T * rel[None, :]).max(axis=1)
        scores -= config.dislike_weight * np.maximum(negative, 0.0)
    return scores


# A history as the recommender reads it: known rows, their weights and their timestamps.
History = tuple[Sequence[int], Sequence[float], Sequence[float | None]]


def cf_user(cf: CollaborativeModel, history: History, config: UserModelConfig) -> np.ndarray | None:
    """The user's folded-in CF vector: their positive events (at or above the model's
    positive threshold; above the user model's neutral weight without one), each with its
    recency factor as confidence."""
    rows, weights, times = history
    w = np.asarray(weights, dtype=np.float64)
    threshold = cf.config.positive_threshold
    positive = w >= threshold if threshold is not None else w > config.neutral_weight
    if not positive.any():
        return None
    recency = recency_factors(list(times), config)
    return cf.fold_in(np.asarray(rows, dtype=np.int64)[positive], recency[positive])


def recommend_generator(
    bundle: Bundle,
    searcher: Searcher,
    signal: UserSignal,
    config: UserModelConfig,
    history: History,
    *,
    strategy: str,
    max_interests: int,
    weights: FusionWeights,
    allowed: np.ndarray | None,
    text: str | None,
) -> Generator:
    """Fused candidates for one recommendation (see the module docstring)."""
    parts = parts_of(bundle)
    cf = parts.collaborative if weights.collaborative > 0 else None
    user = cf_user(cf, history, config) if cf is not None else None
    lexical = parts.lexical if text is not None and weights.lexical > 0 else None
    bm25 = lexical.scores(text) if lexical is not None and text is not None else None
    prior = popularity_prior(bundle) if weights.popularity > 0 else None

    def generate(pool: int) -> Candidates | None:
        want = max(pool, RETRIEVE)
        found: list[np.ndarray] = []
        if weights.content > 0 and signal.has_positive:
            content = candidates(
                strategy, signal, config, searcher, want, allowed, max_interests=max_interests
            )
            if content is not None:
                found.append(content.rows)
        if user is not None and cf is not None:
            found.append(cf.search(user, want, allowed))
        if bm25 is not None:
            found.append(_top(bm25, want, allowed))
        if not found:
            return None  # nothing personal: the caller falls back to popularity
        # Popular items join the union even unweighted: they fill a list that the weighted
        # signals cannot (collaborative mode: items with no CF vector), at the bottom.
        found.append(_popular_rows(bundle, want, allowed))
        rows = np.unique(np.concatenate(found))
        if rows.size == 0:
            return Candidates(rows, np.zeros(0, np.float32))
        signals: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        if weights.content > 0 and signal.has_positive:
            signals["content"] = (content_scores(signal, config, bundle.vectors, rows), None)
        if user is not None and cf is not None:
            signals["collaborative"] = (cf.scores(user, rows), cf.has_vector(rows))
        if prior is not None:
            signals["popularity"] = (prior[rows], None)
        if bm25 is not None:
            signals["lexical"] = _lexical(bm25, rows)
        return _ranked(rows, fuse(signals, weights), want)

    return generate


def _lexical(bm25: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BM25 scores of ``rows`` and where they exist (rows added live after the index: not)."""
    inside = rows < len(bm25)
    return bm25[np.minimum(rows, len(bm25) - 1)] * inside, inside


def _ranked(rows: np.ndarray, fused: np.ndarray, want: int) -> Candidates:
    order = np.argsort(-fused, kind="stable")[:want]
    return Candidates(rows[order], fused[order].astype(np.float32))


def search_generator(
    bundle: Bundle,
    searcher: Searcher,
    query: np.ndarray,
    text: str,
    weights: FusionWeights,
    allowed: np.ndarray | None,
) -> Generator | None:
    """Dense + BM25 candidates for a text search; None when the bundle has no BM25 index."""
    lexical = parts_of(bundle).lexical
    if lexical is None:
        return None
    bm25 = lexical.scores(text)

    def generate(pool: int) -> Candidates:
        want = max(pool, RETRIEVE)
        _, dense_rows = searcher.search(query[None, :], want, allowed)
        found = dense_rows[0][dense_rows[0] >= 0]
        rows = np.unique(np.concatenate([found, _top(bm25, want, allowed)]))
        dense = np.asarray(bundle.vectors[rows], dtype=np.float32) @ query
        fused = fuse({"content": (dense, None), "lexical": _lexical(bm25, rows)}, weights)
        return _ranked(rows, fused, want)

    return generate


def for_recommend(
    bundle: Bundle,
    searcher: Searcher,
    signal: UserSignal,
    config: UserModelConfig,
    options: QueryOptions,
    allowed: np.ndarray | None,
    text: str | None,
    history: History,
) -> Generator | None:
    """The request's fused generator, or None for the plain content path."""
    mode = resolve_mode(options.mode, parts_of(bundle))
    weights = recommend_weights(mode, options.fusion, len(signal.liked_rows) > 0)
    if weights is None:
        return None
    return recommend_generator(
        bundle,
        searcher,
        signal,
        config,
        history,
        strategy=options.strategy,
        max_interests=options.max_interests,
        weights=weights,
        allowed=allowed,
        text=text,
    )


def for_search(
    bundle: Bundle,
    searcher: Searcher,
    query: np.ndarray,
    text: str,
    options: QueryOptions,
    allowed: np.ndarray | None,
) -> Generator | None:
    """Dense + BM25 for a ``hybrid`` search (the default with a BM25 index), else None."""
    mode = resolve_mode(options.mode, parts_of(bundle), search=True)
    if mode != "hybrid":
        return None
    return search_generator(
        bundle, searcher, query, text, options.fusion or SEARCH_WEIGHTS, allowed
    )
