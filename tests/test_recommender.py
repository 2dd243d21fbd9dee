"""The Recommender facade and the user model, on the hash-embedded sample slice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine import (
    Bundle,
    HashEmbedder,
    HistoryEvent,
    InvalidArgument,
    NoUsableInput,
    Recommender,
    RecommenderConfig,
    UnknownItem,
    UserModelConfig,
)
from engine.usermodel import build_query, recency_factors
from indexer.build import build
from tests.conftest import sample_build


@pytest.fixture(scope="module")
def rec(hash_index: Path, hash_embedder: HashEmbedder) -> Recommender:
    return Recommender.open(hash_index, embedder=hash_embedder)


def test_unknown_history_ids_are_skipped_and_reported(rec: Recommender) -> None:
    known = str(rec.bundle.ids[0])
    results = rec.recommend([HistoryEvent(known, 5), HistoryEvent("no-such-id", 5)], k=5)
    assert results.unknown_ids == ("no-such-id",)
    assert results.source == "history" and len(results.items) == 5
    # The unknown id changes nothing: same answer as the known history alone.
    assert results.ids == rec.recommend([HistoryEvent(known, 5)], k=5).ids


def test_nothing_usable_falls_back_to_popularity(rec: Recommender) -> None:
    results = rec.recommend([HistoryEvent("nope", 5)], k=10)
    assert results.source == "popularity" and results.unknown_ids == ("nope",)
    popularity = rec.bundle.popularity
    assert popularity is not None
    expected = [str(rec.bundle.ids[r]) for r in np.argsort(-popularity, kind="stable")[:10]]
    assert results.ids == expected
    scores = [item.score for item in results.items]
    assert scores == sorted(scores, reverse=True)
    # Exclusions and filters still apply to the fallback.
    filtered = rec.recommend([], k=5, exclude=expected[:2])
    assert filtered.ids == expected[2:7]


def test_only_dislikes_is_not_a_query(rec: Recommender) -> None:
    assert rec.recommend([HistoryEvent(str(rec.bundle.ids[0]), -3)], k=3).source == "popularity"


def test_nothing_usable_without_popularity_is_a_clear_error(tmp_path: Path) -> None:
    import pandas as pd

    from indexer.sample import SAMPLE_DIR
    from tests.conftest import movies_slice

    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    catalog = movies_slice(tmp_path, movies["movieId"][:40].tolist())
    embedder = HashEmbedder(16)
    build(sample_build(tmp_path, catalog, "nopop", popularity=False), embedder)
    rec = Recommender.open(tmp_path / "nopop", embedder=embedder)
    with pytest.raises(NoUsableInput, match="no popularity"):
        rec.recommend([HistoryEvent("unknown")], k=5)
    # Interests alone are usable.
    assert rec.recommend([], interests="toy story", k=3).source == "interests"


@pytest.mark.parametrize("k", [0, -1, 1001, 10**12, True, 2.5])
def test_bad_k_is_refused(rec: Recommender, k: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        rec.recommend([], interests="x", k=k)  # type: ignore[arg-type]
    assert info.value.field == "k"


def test_nan_weight_and_timestamp_are_refused(rec: Recommender) -> None:
    item = str(rec.bundle.ids[0])
    with pytest.raises(InvalidArgument) as info:
        rec.recommend([HistoryEvent(item, 5), HistoryEvent(item, math.nan)], k=3)
    assert info.value.field == "history[1].weight"
    with pytest.raises(InvalidArgument) as info:
        rec.recommend([HistoryEvent(item, 5, math.inf)], k=3)
    assert info.value.field == "history[0].timestamp"


def test_limits_on_history_and_text(hash_index: Path, hash_embedder: HashEmbedder) -> None:
    rec = Recommender(
        Bundle.load(hash_index), hash_embedder, RecommenderConfig(max_history=3, max_text_chars=20)
    )
    with pytest.raises(InvalidArgument, match="limit is 3") as info:
        rec.recommend([HistoryEvent("1")] * 4, k=3)
    assert info.value.field == "history"
    with pytest.raises(InvalidArgument, match="limit is 20"):
        rec.search("x" * 21)
    with pytest.raises(InvalidArgument, match="non-empty"):
        rec.search("   ")


def test_unknown_item(rec: Recommender) -> None:
    with pytest.raises(UnknownItem):
        rec.similar("nope")
    with pytest.raises(UnknownItem):
        rec.get("nope")
    item = rec.get(str(rec.bundle.ids[0]))
    assert item.id == str(rec.bundle.ids[0]) and item.metadata["title"]


def test_embedder_dimension_mismatch_is_refused(hash_index: Path) -> None:
    from engine import EmbedderError

    with pytest.raises(EmbedderError, match="64-d"):
        Recommender.open(hash_index, embedder=HashEmbedder(32))


# -- the user model on controlled vectors --------------------------------------------------------


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_weighted_mean_follows_weights() -> None:
    vectors = np.stack([_unit(1, 0, 0), _unit(0, 1, 0)])
    config = UserModelConfig(half_life_days=None)
    q = build_query(vectors, [5.0, 1.0], [None, None], None, config)
    assert q is not None and q[0] > q[1] > 0
    assert np.isclose(np.linalg.norm(q), 1.0)


def test_dislikes_push_away() -> None:
    vectors = np.stack([_unit(1, 1, 0), _unit(0, 1, 0)])
    config = UserModelConfig(half_life_days=None, dislike_weight=0.5)
    liked_only = build_query(vectors[:1], [1.0], [None], None, config)
    with_dislike = build_query(vectors, [1.0, -1.0], [None, None], None, config)
    assert liked_only is not None and with_dislike is not None
    disliked = vectors[1]
    assert float(with_dislike @ disliked) < float(liked_only @ disliked)


def test_neutral_weight_turns_low_ratings_into_dislikes() -> None:
    vectors = np.stack([_unit(1, 0), _unit(0, 1)])
    config = UserModelConfig(half_life_days=None, neutral_weight=3.0)
    q = build_query(vectors, [5.0, 1.0], [None, None], None, config)
    assert q is not None and q[1] < 0 < q[0]


def test_recency_decay_with_floor() -> None:
    day = 86_400.0
    config = UserModelConfig(half_life_days=10, recency_floor=0.2)
    factors = recency_factors([100 * day, 90 * day, 0.0, None], config)
    assert factors[0] == 1.0 and np.isclose(factors[1], 0.5)
    assert factors[2] == 0.2, "a 100-day-old event keeps the floor, it never vanishes"
    assert factors[3] == 1.0
    vectors = np.stack([_unit(1, 0), _unit(0, 1)])
    q = build_query(vectors, [1.0, 1.0], [100 * day, 0.0], None, config)
    assert q is not None and q[0] > q[1] > 0


def test_interests_mix_in() -> None:
    vectors = np.stack([_unit(1, 0, 0)])
    interest = _unit(0, 0, 1)
    q = build_query(vectors, [1.0], [None], interest, UserModelConfig(interest_weight=1.0))
    assert q is not None and np.isclose(q[0], q[2])
    q_only = build_query(vectors[:0], [], [], interest, UserModelConfig())
    assert q_only is not None and np.allclose(q_only, interest)
    assert build_query(vectors[:0], [], [], None, UserModelConfig()) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"like_weight": -1},
        {"half_life_days": 0},
        {"recency_floor": 2},
        {"dislike_weight": math.nan},
    ],
)
def test_bad_user_model_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument):
        UserModelConfig(**kwargs)
