"""Query strategies: mean, best_score and multi_interest (engine/strategies.py).

The real-model tests use all-MiniLM-L6-v2 vectors of films whose genres nobody would confuse;
the unit tests use hand-made unit vectors whose scores can be worked out on paper.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import faiss
import numpy as np
import pytest

from engine import (
    Filter,
    HashEmbedder,
    HistoryEvent,
    QueryOptions,
    Recommender,
    UserModelConfig,
)
from engine.ann import Searcher
from engine.embedder import normalize_rows
from engine.strategies import (
    STRATEGIES,
    _dhondt_merge,
    best_score_candidates,
    mean_candidates,
    weighted_kmeans,
)
from engine.usermodel import UserSignal
from tests.conftest import MemoEmbedder

FAMILY = {"Animation", "Children"}
# Toy Story, A Bug's Life, The Lion King, Aladdin.
ANIMATED = ["1", "2355", "364", "588"]
# The Shining, Jaws, The Exorcist, The Blair Witch Project, Psycho, Alien.
HORROR = ["1258", "1387", "1997", "2710", "1219", "1214"]


# -- real MiniLM vectors ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(real_index: Path, minilm: MemoEmbedder) -> Recommender:
    return Recommender.open(real_index, embedder=minilm)


def _genres(rec: Recommender, item_id: str) -> set[str]:
    return set(rec.get(item_id).metadata["genres"])


def _pick(rec: Recommender, preferred: list[str], genres: set[str], n: int) -> list[str]:
    """``preferred`` ids the bundle holds with one of ``genres``, topped up with its most popular
    films of those genres when some are missing."""
    chosen = [i for i in preferred if i in rec.bundle.row_of and _genres(rec, i) & genres][:n]
    items = rec.bundle.items.sort_values("popularity", ascending=False, kind="stable")
    for item_id, item_genres in zip(items["id"], items["genres"], strict=True):
        if len(chosen) >= n:
            break
        if item_id not in chosen and set(item_genres) & genres:
            chosen.append(str(item_id))
    assert len(chosen) == n, f"the bundle has fewer than {n} {genres} films"
    return chosen


def _counts(rec: Recommender, ids: list[str]) -> tuple[int, int]:
    """(animation/children films, horror films) among ``ids``."""
    genres = [_genres(rec, i) for i in ids]
    return sum(bool(g & FAMILY) for g in genres), sum("Horror" in g for g in genres)


@pytest.mark.slow
def test_the_chosen_films_are_what_they_seem(real: Recommender) -> None:
    for item_id in ANIMATED:
        assert item_id in real.bundle.row_of and "Animation" in _genres(real, item_id)
    for item_id in HORROR:
        assert item_id in real.bundle.row_of and "Horror" in _genres(real, item_id)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["multi_interest", "best_score"])
@pytest.mark.parametrize("max_interests", [2, 3])
def test_two_disjoint_tastes_are_both_served(
    real: Recommender, strategy: str, max_interests: int
) -> None:
    liked = _pick(real, ANIMATED, {"Animation"}, 4) + _pick(real, HORROR, {"Horror"}, 4)
    results = real.recommend(
        [HistoryEvent(i, 5.0) for i in liked],
        k=10,
        options=QueryOptions(strategy=strategy, max_interests=max_interests),  # type: ignore[arg-type]
    )
    assert len(results.items) == 10 and not set(results.ids) & set(liked)
    family, horror = _counts(real, results.ids)
    assert family >= 2 and horror >= 2, f"{strategy}: {family} family, {horror} horror films"


@pytest.mark.slow
def test_a_small_taste_is_not_drowned_by_a_large_one(real: Recommender) -> None:
    """Six horror films and two Pixar films: the two form a taste of their own, and
    multi_interest gives it slots in proportion to its importance (2 of 8 → 2 or 3 of 10)."""
    horror = _pick(real, HORROR, {"Horror"}, 6)
    pixar = _pick(real, ["1", "2355"], {"Animation"}, 2)
    liked = horror + pixar
    vectors = np.asarray(real.bundle.vectors[[real.bundle.row_of[i] for i in liked]])
    labels = weighted_kmeans(vectors, np.ones(len(liked)), 2)
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1 and labels[0] != labels[6]

    history = [HistoryEvent(i, 5.0) for i in liked]
    for options in (
        QueryOptions(strategy="multi_interest", max_interests=2),
        QueryOptions(strategy="multi_interest", max_interests=3),
        QueryOptions(strategy="best_score"),
    ):
        results = real.recommend(history, k=10, options=options)
        family, horror_count = _counts(real, results.ids)
        assert family >= 2, f"{options.strategy}: the animated taste got {family} of 10"
        assert horror_count >= 5, f"{options.strategy}: the main taste got {horror_count} of 10"


# Six horror films and two films of one other kind: Lion King + Aladdin, Forrest Gump + Braveheart.
SMALL_TASTES = [["364", "588"], ["356", "110"]]


def _objective(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Spherical k-means objective (unit weights): Σ cos(v, its cluster's mean direction)."""
    total = 0.0
    for c in np.unique(labels):
        members = vectors[labels == c]
        total += float((members @ normalize_rows(members.sum(axis=0))[0]).sum())
    return total


def _best_split(vectors: np.ndarray) -> np.ndarray:
    """The best 2-partition by brute force (2^(n-1) - 1 of them)."""
    n = len(vectors)
    splits = [np.array([(m >> i) & 1 for i in range(n)]) for m in range(1, 2 ** (n - 1))]
    return max(splits, key=lambda labels: _objective(vectors, labels))


def _history_vectors(rec: Recommender, ids: list[str]) -> np.ndarray:
    return np.asarray(rec.bundle.vectors[[rec.bundle.row_of[i] for i in ids]], dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("small", SMALL_TASTES)
def test_the_obvious_split_is_the_best_split(real: Recommender, small: list[str]) -> None:
    """The premise of the next test: by k-means' own objective, the best two clusters of these
    eight films are the six horror films and the other two."""
    vectors = _history_vectors(real, HORROR + small)
    best = _best_split(vectors)
    assert len(set(best[:6])) == 1 and len(set(best[6:])) == 1 and best[0] != best[6]


@pytest.mark.slow
@pytest.mark.parametrize("small", SMALL_TASTES)
def test_kmeans_finds_the_best_split_of_two_real_tastes(
    real: Recommender, small: list[str]
) -> None:
    vectors = _history_vectors(real, HORROR + small)
    labels = weighted_kmeans(vectors, np.ones(len(vectors)), 2)
    assert _objective(vectors, labels) >= _objective(vectors, _best_split(vectors)) - 1e-6


# -- weighted k-means ---------------------------------------------------------------------------


def _two_clusters(n: int = 20, seed: int = 3) -> np.ndarray:
    """``2n`` unit vectors in R^8: the first n near e0, the next n near e1."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, 8), np.float32)
    centres[0, 0] = centres[1, 1] = 1.0
    points = np.repeat(centres, n, axis=0) + rng.normal(0, 0.05, (2 * n, 8)).astype(np.float32)
    return normalize_rows(points)


def test_kmeans_separates_two_obvious_clusters() -> None:
    vectors = _two_clusters()
    weights = np.linspace(0.5, 2.0, len(vectors))
    labels = weighted_kmeans(vectors, weights, 2)
    assert labels.shape == (40,)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1
    assert labels[0] != labels[20]
    # Asking for more clusters than there are tastes still never mixes the two.
    labels3 = weighted_kmeans(vectors, weights, 3)
    assert not set(labels3[:20]) & set(labels3[20:])


def test_kmeans_is_deterministic() -> None:
    vectors = normalize_rows(np.random.default_rng(0).normal(size=(50, 16)))
    weights = np.random.default_rng(1).uniform(0.2, 5.0, 50)
    first = weighted_kmeans(vectors, weights, 4)
    assert np.array_equal(first, weighted_kmeans(vectors.copy(), weights.copy(), 4))
    assert len(set(first.tolist())) > 1


def test_kmeans_with_more_clusters_than_points() -> None:
    three = normalize_rows(np.eye(3, 5, dtype=np.float32) + 0.01)
    labels = weighted_kmeans(three, np.ones(3), 10)
    # k is capped at n; three distinct points each seed (and keep) a cluster of their own.
    assert labels.shape == (3,) and sorted(labels.tolist()) == [0, 1, 2]
    assert weighted_kmeans(three[:1], np.ones(1), 5).tolist() == [0]
    # Identical points cannot seed a second cluster.
    same = np.repeat(three[:1], 4, axis=0)
    assert set(weighted_kmeans(same, np.ones(4), 3).tolist()) == {0}


# -- D'Hondt merge ------------------------------------------------------------------------------


def _lists(*rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    scores = np.where(out >= 0, 1.0 - out / 1000.0, -np.inf).astype(np.float32)
    return out, scores


def test_dhondt_gives_slots_in_proportion_to_importance() -> None:
    rows, scores = _lists(list(range(20)), list(range(100, 120)))
    merged = _dhondt_merge(rows, scores, np.array([3.0, 1.0]), 8)
    # Quotients 3, 1.5, 1 | 1, 0.75, 0.6, 0.5 | 0.5: ties go to the first interest.
    assert merged.rows.tolist() == [0, 1, 2, 100, 3, 4, 5, 101]
    assert sum(r < 100 for r in merged.rows) == 6 and sum(r >= 100 for r in merged.rows) == 2
    # Each row keeps the score its own list gave it.
    # Scores are each item's own similarity, capped by the score above it (they read in order).
    assert np.allclose(merged.scores, np.minimum.accumulate(1.0 - merged.rows / 1000.0))


def test_dhondt_never_repeats_an_item() -> None:
    rows, scores = _lists([0, 1, 2, 3, 4, 5], [0, 1, 100, 101, 102])
    merged = _dhondt_merge(rows, scores, np.array([1.0, 1.0]), 6)
    # Interest 2 skips 0 (taken), interest 1 then skips 1 (taken by interest 2).
    assert merged.rows.tolist() == [0, 1, 2, 100, 3, 101]
    assert len(set(merged.rows.tolist())) == len(merged)


def test_dhondt_gives_an_exhausted_interests_slots_to_the_others() -> None:
    rows, scores = _lists([0, 1], list(range(100, 110)))
    merged = _dhondt_merge(rows, scores, np.array([10.0, 1.0]), 6)
    assert merged.rows.tolist() == [0, 1, 100, 101, 102, 103]
    # When every list runs out, the merge is shorter than the pool rather than padded.
    short = _dhondt_merge(*_lists([0, 1], [1, 2]), np.array([1.0, 1.0]), 10)
    assert short.rows.tolist() == [0, 1, 2]


# -- best_score on hand-made vectors ------------------------------------------------------------

SIDE = math.sqrt(1 - 0.95**2)


def _toy() -> tuple[Searcher, np.ndarray]:
    """Rows 0, 1: the liked items e0, e1 (orthogonal). Row 2 (NEAR_ONE) has cosine 0.95 with
    e0 alone; row 3 (MIDDLE) is their mean direction; row 4 is unrelated."""
    v = np.zeros((5, 4), np.float32)
    v[0, 0] = v[1, 1] = v[4, 3] = 1.0
    v[2, 0], v[2, 2] = 0.95, SIDE
    v[3, 0] = v[3, 1] = 1 / math.sqrt(2)
    v = normalize_rows(v)
    index = faiss.IndexFlatIP(4)
    index.add(v)
    return Searcher(index, v), v


NEAR_ONE, MIDDLE = 2, 3


def _signal(
    v: np.ndarray, disliked: tuple[int, ...] = (), strength: tuple[float, float] = (1.0, 1.0)
) -> UserSignal:
    return UserSignal(
        liked_rows=np.array([0, 1]),
        liked_vectors=v[[0, 1]],
        liked_strength=np.asarray(strength, dtype=np.float64),
        disliked_vectors=v[list(disliked)].reshape(len(disliked), v.shape[1]),
        disliked_strength=np.ones(len(disliked)),
        interest=None,
    )


def test_best_score_prefers_a_close_match_to_one_liked_item() -> None:
    searcher, v = _toy()
    allowed = np.array([False, False, True, True, True])
    config = UserModelConfig()

    best = best_score_candidates(_signal(v), config, searcher, 3, allowed)
    assert best is not None
    assert best.rows.tolist()[:2] == [NEAR_ONE, MIDDLE]
    # max_i cos(c, v_i): 0.95 for the near match, cos 45° for the middle one.
    assert best.scores[0] == pytest.approx(0.95, abs=1e-6)
    assert best.scores[1] == pytest.approx(1 / math.sqrt(2), abs=1e-6)

    # The mean of e0 and e1 *is* the middle direction: mean ranks the other way round.
    mean = mean_candidates(_signal(v), config, searcher, 3, allowed)
    assert mean is not None and mean.rows.tolist()[:2] == [MIDDLE, NEAR_ONE]
    assert mean.scores[0] == pytest.approx(1.0, abs=1e-6)
    assert mean.scores[1] == pytest.approx(0.95 / math.sqrt(2), abs=1e-6)


def test_best_score_weighs_liked_items_by_relative_strength() -> None:
    searcher, v = _toy()
    allowed = np.array([False, False, True, True, True])
    # e0 liked half as strongly as e1: the near match of e0 scores 0.5 × 0.95.
    best = best_score_candidates(
        _signal(v, strength=(1.0, 2.0)), UserModelConfig(), searcher, 3, allowed
    )
    assert best is not None
    scores = dict(zip(best.rows.tolist(), best.scores.tolist(), strict=True))
    assert scores[NEAR_ONE] == pytest.approx(0.5 * 0.95, abs=1e-6)
    assert scores[MIDDLE] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert best.rows[0] == MIDDLE


def test_dislikes_lower_a_candidates_best_score() -> None:
    searcher, v = _toy()
    disliked = np.zeros((1, 4), np.float32)
    disliked[0, 2] = 1.0  # e2: the near match leans towards it (cosine SIDE), the middle does not
    v = np.vstack([v, disliked])
    index = faiss.IndexFlatIP(4)
    index.add(v)
    searcher = Searcher(index, v)
    allowed = np.array([False, False, True, True, True, False])
    signal = _signal(v, disliked=(5,))

    base = best_score_candidates(_signal(v), UserModelConfig(), searcher, 3, allowed)
    mild = best_score_candidates(signal, UserModelConfig(dislike_weight=0.5), searcher, 3, allowed)
    strong = best_score_candidates(
        signal, UserModelConfig(dislike_weight=1.0), searcher, 3, allowed
    )
    assert base is not None and mild is not None and strong is not None
    before = dict(zip(base.rows.tolist(), base.scores.tolist(), strict=True))
    after = dict(zip(mild.rows.tolist(), mild.scores.tolist(), strict=True))
    assert after[NEAR_ONE] == pytest.approx(0.95 - 0.5 * SIDE, abs=1e-6)
    assert after[NEAR_ONE] < before[NEAR_ONE]
    assert after[MIDDLE] == pytest.approx(before[MIDDLE], abs=1e-7)  # orthogonal to the dislike
    # 0.95 - SIDE ≈ 0.638 < cos 45°: a strong enough dislike flips the order.
    assert mild.rows[0] == NEAR_ONE and strong.rows[0] == MIDDLE


# -- exclusion and exact count, every strategy --------------------------------------------------


@pytest.fixture(scope="module")
def hashrec(hash_index: Path, hash_embedder: HashEmbedder) -> Recommender:
    return Recommender.open(hash_index, embedder=hash_embedder)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    ("genre", "k"), [("Comedy", 10), ("Animation", 20), ("Film-Noir", 10), ("Western", 8)]
)
def test_history_is_excluded_and_the_count_is_exact(
    hashrec: Recommender, strategy: str, genre: str, k: int
) -> None:
    items = hashrec.bundle.items
    has_genre = [genre in g for g in items["genres"]]
    in_genre = items["id"][has_genre].tolist()
    # A history larger than k, holding some of the filtered genre (and some dislikes).
    rng = np.random.default_rng(len(genre) * 7 + k)
    others = rng.choice(items["id"].to_numpy(), 25, replace=False).tolist()
    history_ids = list(dict.fromkeys(in_genre[: len(in_genre) // 2 + 1] + others))
    history = [
        HistoryEvent(i, -1.0 if n % 7 == 6 else float(1 + n % 5)) for n, i in enumerate(history_ids)
    ]
    assert len(history) > k
    results = hashrec.recommend(
        history,
        k=k,
        filters=[Filter("genres", eq=genre)],
        options=QueryOptions(strategy=strategy, max_interests=4),  # type: ignore[arg-type]
    )
    eligible = set(in_genre) - set(history_ids)
    assert results.source == "history"
    assert len(results.ids) == min(k, len(eligible)) == len(set(results.ids))
    assert set(results.ids) <= eligible, "a seen or filtered-out item came back"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_excludes_and_serves_interests(hashrec: Recommender, strategy: str) -> None:
    ids = hashrec.bundle.ids
    history = [HistoryEvent(str(i), 4.0) for i in ids[:30]]
    exclude = [str(i) for i in ids[30:40]]
    results = hashrec.recommend(
        history,
        interests="toy story",
        k=25,
        exclude=exclude,
        options=QueryOptions(strategy=strategy),  # type: ignore[arg-type]
    )
    assert results.source == "history+interests" and len(results.ids) == 25
    assert not set(results.ids) & {str(i) for i in ids[:40]}
    counts = Counter(results.ids)
    assert max(counts.values()) == 1
    only = hashrec.recommend(
        [],
        interests="toy story",
        k=5,
        options=QueryOptions(strategy=strategy),  # type: ignore[arg-type]
    )
    assert only.source == "interests" and len(only.ids) == 5
