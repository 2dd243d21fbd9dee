"""History → candidates: the query strategies a request can choose.

* ``mean`` (default): one Rocchio query, the weighted and recency-decayed mean of the liked
  items, pushed away from the disliked ones, plus the interests (:func:`engine.usermodel.mean_query`).
* ``best_score``: each candidate scores its best match among the liked items (and the interests),
  ``max_i s_i · cos(c, v_i)`` with ``s_i`` the item's strength relative to the strongest, minus
  ``dislike_weight · max(0, max_j s_j · cos(c, u_j))`` over disliked items. A user with two
  unrelated tastes is served both, where their mean would point between them at neither.
* ``multi_interest``: the liked items are clustered (weighted k-means, at most ``max_interests``
  clusters); each cluster (and the interests text) retrieves on its own, and the lists are merged
  in proportion to each interest's importance (its summed strength: size × recency) by the
  D'Hondt rule, so one large taste cannot drown a smaller one.

All candidates carry exact scores computed from the stored full-precision vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from engine.ann import Searcher
from engine.errors import InvalidArgument
from engine.usermodel import UserModelConfig, UserSignal, mean_query

Strategy = Literal["mean", "best_score", "multi_interest"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# best_score probes with (and scores against) at most this many of the strongest liked items.
MAX_PROBES = 64
KMEANS_ITERATIONS = 15
KMEANS_RESTARTS = 4


@dataclass(frozen=True)
class Candidates:
    """Ranked candidate rows (best first) with their scores, ``int64 (m,)`` and ``float32 (m,)``.

    ``query`` is the single query vector when the strategy has one (exact re-scoring uses it).
    """

    rows: np.ndarray
    scores: np.ndarray
    query: np.ndarray | None = None
    # True when the order itself is the ranking (a merge of lists whose scores are not on one
    # scale): stages that weigh relevance then use the rank, not the scores.
    merged: bool = False

    def __len__(self) -> int:
        return len(self.rows)

    def relevance(self) -> np.ndarray:
        """``float64 (m,)`` in [0, 1], higher is better: rescaled cosines, or rank for a merge."""
        if self.merged:
            return 1.0 - np.arange(len(self.rows), dtype=np.float64) / max(len(self.rows), 1)
        return (np.clip(self.scores.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0


def check_strategy(strategy: str, max_interests: int) -> None:
    if strategy not in STRATEGIES:
        raise InvalidArgument(
            f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})", field="strategy"
        )
    if not 1 <= max_interests <= 20:
        raise InvalidArgument("max_interests must be from 1 to 20", field="max_interests")


def _valid(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = rows >= 0
    return rows[keep], scores[keep]


def mean_candidates(
    signal: UserSignal,
    config: UserModelConfig,
    searcher: Searcher,
    pool: int,
    allowed: np.ndarray | None,
    query: np.ndarray | None = None,
) -> Candidates | None:
    """``query``: :func:`mean_query` of this signal, when the caller computed it already."""
    if query is None:
        query = mean_query(signal, config)
    if query is None:
        return None
    scores, rows = searcher.search(query[None, :], pool, allowed)
    found, found_scores = _valid(scores[0], rows[0])
    return Candidates(found, found_scores, query)


def positive_probes(signal: UserSignal, config: UserModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The strongest liked vectors (and the interests) with strengths relative to the strongest."""
    order = np.argsort(-signal.liked_strength, kind="stable")[:MAX_PROBES]
    vectors = signal.liked_vectors[order]
    strength = signal.liked_strength[order]
    if len(strength):
        strength = config.like_weight * strength / strength.max()
    if signal.interest is not None:
        vectors = (
            np.vstack([vectors, signal.interest[None, :]])
            if len(vectors)
            else signal.interest[None, :]
        )
        strength = np.append(strength, config.interest_weight)
    return np.asarray(vectors, dtype=np.float32), strength


def best_score_candidates(
    signal: UserSignal,
    config: UserModelConfig,
    searcher: Searcher,
    pool: int,
    allowed: np.ndarray | None,
    positives: tuple[np.ndarray, np.ndarray] | None = None,
) -> Candidates | None:
    """``positives``: :func:`positive_probes` of this signal, when the caller computed it already."""
    probes, strength = positives if positives is not None else positive_probes(signal, config)
    if len(probes) == 0:
        return None
    top, rows = searcher.search(probes, pool, allowed)
    union = np.unique(rows[rows >= 0])
    if union.size == 0:
        return Candidates(union.astype(np.int64), np.zeros(0, np.float32))
    cand = np.asarray(searcher.vectors[union], dtype=np.float32)
    scale = strength.astype(np.float64)
    if signal.interest is not None and len(probes) > 1:
        # Text-to-item cosines run lower than item-to-item ones (~0.5 against ~0.8 with MiniLM):
        # the interests probe is put on the liked items' scale by its best match, or it would
        # never win a candidate.
        best = np.maximum(top[:, 0].astype(np.float64), 1e-6)
        scale[-1] *= float(np.median(best[:-1])) / best[-1]
    scores = (cand @ probes.T * scale[None, :]).max(axis=1)
    if len(signal.disliked_vectors) and config.dislike_weight > 0:
        rel = signal.disliked_strength / signal.disliked_strength.max()
        negative = (cand @ signal.disliked_vectors.T * rel[None, :]).max(axis=1)
        scores = scores - config.dislike_weight * np.maximum(negative, 0.0)
    order = np.argsort(-scores, kind="stable")[:pool]
    return Candidates(union[order].astype(np.int64), scores[order].astype(np.float32))


def weighted_kmeans(
    vectors: np.ndarray, weights: np.ndarray, k: int, *, seed: int = 0
) -> np.ndarray:
    """Cluster labels ``int64 (n,)`` of unit ``vectors`` by spherical weighted k-means.

    ``KMEANS_RESTARTS`` k-means++ seedings, each refined by Lloyd steps; the labelling with the
    largest weighted cosine to its centroids wins (one seeding can strand a small taste).
    """
    rng = np.random.default_rng(seed)
    best_labels, best_objective = np.zeros(len(vectors), dtype=np.int64), -np.inf
    for _ in range(KMEANS_RESTARTS):
        labels, objective = _kmeans_once(vectors, weights, min(k, len(vectors)), rng)
        if objective > best_objective + 1e-9:
            best_labels, best_objective = labels, objective
    return best_labels


def _kmeans_once(
    vectors: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    n = len(vectors)
    x = vectors.astype(np.float64)
    # k-means++ seeding on cosine distance.
    centers = [int(rng.choice(n, p=weights / weights.sum()))]
    best_sim = x @ x[centers[0]]
    for _ in range(1, k):
        distance = np.clip(1.0 - best_sim, 0.0, None) * weights
        if distance.sum() <= 0:
            break
        centers.append(int(rng.choice(n, p=distance / distance.sum())))
        best_sim = np.maximum(best_sim, x @ x[centers[-1]])
    centroids = x[centers]
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(KMEANS_ITERATIONS):
        new = np.argmax(x @ centroids.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        # Weighted member sums per cluster in one product, then back onto the sphere.
        onehot = np.zeros((n, len(centroids)))
        onehot[np.arange(n), labels] = weights
        sums = onehot.T @ x
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids)
    objective = float((weights * (x @ centroids.T)[np.arange(n), labels]).sum())
    return labels, objective


def multi_interest_candidates(
    signal: UserSignal,
    config: UserModelConfig,
    searcher: Searcher,
    pool: int,
    allowed: np.ndarray | None,
    max_interests: int,
    plan: InterestPlan | None = None,
) -> Candidates | None:
    """``plan``: :func:`interest_queries` of this signal, when the caller computed it already
    (bulk retrieval batches every user's queries into one search)."""
    if plan is None:
        plan = interest_queries(signal, config, max_interests)
    if plan is None:
        return None
    queries, importance = plan
    scores, rows = searcher.search(queries, pool, allowed)
    return _dhondt_merge(rows, scores, importance, pool)


# One query per taste cluster (and the interests): ``float32 (m, d)`` and importances ``(m,)``.
InterestPlan = tuple[np.ndarray, np.ndarray]


def interest_queries(
    signal: UserSignal, config: UserModelConfig, max_interests: int
) -> InterestPlan | None:
    """The multi_interest strategy's queries and their importances; None with nothing positive."""
    if not signal.has_positive:
        return None
    queries: list[np.ndarray] = []
    importance: list[float] = []
    no_interest = UserSignal(
        signal.liked_rows, signal.liked_vectors, signal.liked_strength,
        signal.disliked_vectors, signal.disliked_strength, None,
    )  # fmt: skip
    if len(signal.liked_rows):
        labels = weighted_kmeans(signal.liked_vectors, signal.liked_strength, max_interests)
        for c in np.unique(labels):
            members = labels == c
            query = mean_query(
                no_interest, config, (signal.liked_vectors[members], signal.liked_strength[members])
            )
            if query is not None:
                queries.append(query)
                importance.append(float(signal.liked_strength[members].sum()))
    if signal.interest is not None:
        interest_only = UserSignal(
            signal.liked_rows[:0], signal.liked_vectors[:0], signal.liked_strength[:0],
            signal.disliked_vectors, signal.disliked_strength, signal.interest,
        )  # fmt: skip
        query = mean_query(interest_only, config)
        if query is not None:
            queries.append(query)
            # The interests text weighs as much as an average taste of the history.
            importance.append(
                config.interest_weight * (float(np.mean(importance)) if importance else 1.0)
            )
    if not queries:
        return None
    return np.stack(queries), np.asarray(importance)


def _dhondt_merge(
    rows: np.ndarray, scores: np.ndarray, importance: np.ndarray, pool: int
) -> Candidates:
    """Interleave per-interest lists, giving interest i the next slot while it has the largest
    ``importance_i / (taken_i + 1)``; duplicates keep their first (higher) position."""
    taken = np.zeros(len(importance), dtype=np.int64)
    cursor = np.zeros(len(importance), dtype=np.int64)
    out_rows: list[int] = []
    out_scores: list[float] = []
    seen: set[int] = set()
    active = np.ones(len(importance), dtype=bool)
    while len(out_rows) < pool and active.any():
        quotient = np.where(active, importance / (taken + 1), -np.inf)
        i = int(np.argmax(quotient))
        while cursor[i] < rows.shape[1] and (
            rows[i, cursor[i]] < 0 or int(rows[i, cursor[i]]) in seen
        ):
            cursor[i] += 1
        if cursor[i] >= rows.shape[1]:
            active[i] = False
            continue
        row = int(rows[i, cursor[i]])
        seen.add(row)
        out_rows.append(row)
        out_scores.append(float(scores[i, cursor[i]]))
        taken[i] += 1
        cursor[i] += 1
    return Candidates(
        np.asarray(out_rows, dtype=np.int64),
        # Each item's similarity to its own interest, capped by the one above it: the list's
        # order is the merge's, and its scores must read in that order.
        np.minimum.accumulate(np.asarray(out_scores, dtype=np.float32)),
        merged=True,
    )


def candidates(
    strategy: str,
    signal: UserSignal,
    config: UserModelConfig,
    searcher: Searcher,
    pool: int,
    allowed: np.ndarray | None,
    *,
    max_interests: int = 3,
) -> Candidates | None:
    """Up to ``pool`` ranked candidates for ``signal``, or None when it has nothing positive."""
    if strategy == "best_score":
        return best_score_candidates(signal, config, searcher, pool, allowed)
    if strategy == "multi_interest":
        return multi_interest_candidates(signal, config, searcher, pool, allowed, max_interests)
    return mean_candidates(signal, config, searcher, pool, allowed)
