"""Offline evaluation (engine/evaluation): metrics, splits, baselines, runners, BEIR and ANN
quality, each proved on small generated data whose answer is worked out by hand below."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from math import log2
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import CatalogError, HashEmbedder, InvalidArgument, Recommender
from engine.ann import Searcher
from engine.evaluation import (
    EngineMethod,
    EvalConfig,
    ItemKNNMethod,
    PopularMethod,
    RandomMethod,
    SplitConfig,
    evaluate_recommenders,
    ranking_metrics,
    split_interactions,
)
from engine.evaluation.ann import ann_quality, sweep_values
from engine.evaluation.beir import evaluate_search, load_qrels, load_queries, search_metrics
from engine.evaluation.metrics import user_metrics
from engine.evaluation.splits import validation_split
from indexer.build import BuildConfig, build
from indexer.catalog import CatalogSpec
from indexer.faiss_build import build_faiss_index
from tests.conftest import clustered

Row = tuple[str, str, float, float]


def interactions(rows: Iterable[Row]) -> pd.DataFrame:
    """A frame shaped like ``load_interactions``' output: user, item, weight, timestamp."""
    return pd.DataFrame(list(rows), columns=["user", "item", "weight", "timestamp"]).astype(
        {"user": str, "item": str, "weight": np.float64, "timestamp": np.float64}
    )


def items_of(frame: pd.DataFrame, user: str) -> set[str]:
    return set(frame.loc[frame["user"] == user, "item"])


def history(items: Sequence[str], weights: Sequence[float] | None = None) -> pd.DataFrame:
    weights = weights if weights is not None else [5.0] * len(items)
    return interactions(
        ("someone", item, w, float(t))
        for t, (item, w) in enumerate(zip(items, weights, strict=True))
    )


class Recorder:
    """Wraps a method and remembers every list it returned and the history it was given."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[attr-defined]
        self.lists: dict[str, list[str]] = {}
        self.histories: dict[str, set[str]] = {}

    def fit(self, train: pd.DataFrame) -> None:
        self.inner.fit(train)  # type: ignore[attr-defined]

    def recommend(self, history: pd.DataFrame, k: int) -> list[str]:
        out = self.inner.recommend(history, k)  # type: ignore[attr-defined]
        user = str(history["user"].iloc[0])
        self.lists[user] = list(out)
        self.histories[user] = set(history["item"])
        return out


class FixedMethod:
    """Returns a given list per user."""

    name = "fixed"

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists

    def fit(self, train: pd.DataFrame) -> None:
        pass

    def recommend(self, history: pd.DataFrame, k: int) -> list[str]:
        return self.lists[str(history["user"].iloc[0])][:k]


# -- 1. metrics ---------------------------------------------------------------------------------


def test_user_metrics_by_hand() -> None:
    # R = {a, b, c}; L = [a, x, b, y]: hits at ranks 1 and 3.
    m = user_metrics(["a", "x", "b", "y"], {"a", "b", "c"}, [1, 2, 4])
    assert m["Recall@1"] == pytest.approx(1 / 3)
    assert m["Recall@2"] == pytest.approx(1 / 3)
    assert m["Recall@4"] == pytest.approx(2 / 3)
    assert m["HitRate@1"] == m["HitRate@2"] == m["HitRate@4"] == 1.0
    # Ideal DCG over min(|R|, K) positions.
    assert m["NDCG@1"] == pytest.approx((1 / log2(2)) / (1 / log2(2)))
    assert m["NDCG@2"] == pytest.approx((1 / log2(2)) / (1 / log2(2) + 1 / log2(3)))
    assert m["NDCG@4"] == pytest.approx(
        (1 / log2(2) + 1 / log2(4)) / (1 / log2(2) + 1 / log2(3) + 1 / log2(4))
    )
    assert m["MRR"] == 1.0


def test_user_metrics_late_hit_and_mrr_cut_at_largest_k() -> None:
    # R = {a}; L = [x, y, a]: the only hit is at rank 3.
    m = user_metrics(["x", "y", "a"], {"a"}, [2, 3])
    assert m["Recall@2"] == 0.0 and m["HitRate@2"] == 0.0 and m["NDCG@2"] == 0.0
    assert m["Recall@3"] == 1.0 and m["HitRate@3"] == 1.0
    assert m["NDCG@3"] == pytest.approx((1 / log2(4)) / (1 / log2(2)))  # = 0.5
    assert m["MRR"] == pytest.approx(1 / 3)
    # With K at most 2 the hit at rank 3 is beyond every cut-off: MRR is 0.
    assert user_metrics(["x", "y", "a"], {"a"}, [1, 2])["MRR"] == 0.0


def test_ndcg_ideal_is_capped_at_k() -> None:
    # |R| = 5 but K = 2: two hits in the top 2 is a perfect list (ideal over min(5, 2) = 2).
    m = user_metrics(["a", "b", "x"], {"a", "b", "c", "d", "e"}, [2])
    assert m["NDCG@2"] == pytest.approx(1.0)
    assert m["Recall@2"] == pytest.approx(2 / 5)
    # One hit at rank 2 of 2: (1/log2(3)) / (1/log2(2) + 1/log2(3)).
    m = user_metrics(["x", "a"], {"a", "b", "c"}, [2])
    assert m["NDCG@2"] == pytest.approx((1 / log2(3)) / (1 / log2(2) + 1 / log2(3)))


def test_ranking_metrics_average_coverage_diversity_novelty() -> None:
    catalogue = [f"i{n}" for n in range(6)] + ["a", "b", "c", "d"]  # 10 items
    lists = {"u1": ["a", "b"], "u2": ["c", "a"], "u3": ["a", "c"]}
    relevant = {"u1": {"a"}, "u2": {"x"}, "u3": set()}  # u3 has nothing relevant: not averaged
    e = np.eye(3, dtype=np.float32)
    vectors = np.stack([e[0], e[1], e[0], e[2]])  # a ⟂ b, c == a, d ⟂ all
    row_of = {"a": 0, "b": 1, "c": 2, "d": 3}
    out = ranking_metrics(
        lists,
        relevant,
        [2],
        catalogue=catalogue,
        vectors=vectors,
        row_of=row_of,
        train_users_of={"a": 3, "b": 1},
        n_train_users=3,
    )
    # Averages over u1 (a hit at rank 1) and u2 (no hit): (1 + 0) / 2.
    assert out["Recall@2"] == pytest.approx((1 + 0) / 2)
    assert out["HitRate@2"] == pytest.approx((1 + 0) / 2)
    assert out["NDCG@2"] == pytest.approx((1 + 0) / 2)
    assert out["MRR"] == pytest.approx((1 + 0) / 2)
    # Distinct items {a, b, c} over a catalogue of 10.
    assert out["Coverage@2"] == pytest.approx(3 / 10)
    # u1 [a, b]: orthogonal → distance 1; u2 [c, a]: identical → distance 0.
    assert out["Diversity@2"] == pytest.approx((1.0 + 0.0) / 2)
    # p = (users_of + 1) / (n + 1): a → 4/4, b → 2/4, c (unseen) → 1/4.
    # u1: (-log2(1) - log2(1/2)) / 2 = 0.5; u2: (-log2(1/4) - log2(1)) / 2 = 1.0.
    novelty_u1 = (-log2(4 / 4) - log2(2 / 4)) / 2
    novelty_u2 = (-log2(1 / 4) - log2(4 / 4)) / 2
    assert out["Novelty@2"] == pytest.approx((novelty_u1 + novelty_u2) / 2)


def test_diversity_of_three_items_and_missing_options() -> None:
    e = np.eye(2, dtype=np.float32)
    vectors = np.stack([e[0], e[1], e[0]])
    row_of = {"a": 0, "b": 1, "c": 2}
    out = ranking_metrics(
        {"u": ["a", "b", "c"]},
        {"u": {"a"}},
        [3],
        catalogue=["a", "b", "c"],
        vectors=vectors,
        row_of=row_of,
    )
    # Pair similarities: a·b = 0, a·c = 1, b·c = 0 → mean 1/3 → distance 1 - 1/3.
    assert out["Diversity@3"] == pytest.approx(1 - (0 + 1 + 0) / 3)
    assert out["Coverage@3"] == pytest.approx(3 / 3)
    assert "Novelty@3" not in out  # no training counts given
    plain = ranking_metrics({"u": ["a"]}, {"u": {"a"}}, [1], catalogue=["a", "b"])
    assert "Diversity@1" not in plain and "Novelty@1" not in plain
    assert ranking_metrics({"u": ["a"]}, {"u": set()}, [1], catalogue=["a"]) == {}


# -- 2. splits ----------------------------------------------------------------------------------

# User a: 10 rows, b: 5 rows, c: 3 rows; item "<user>t<ts>"; rows deliberately out of time order.
_A_TIMES = [5, 3, 9, 0, 7, 1, 8, 2, 6, 4]
_B_TIMES = [4, 0, 3, 1, 2]
_C_TIMES = [2, 0, 1]


def _three_users() -> pd.DataFrame:
    rows = [("a", f"at{t}", 5.0, float(t)) for t in _A_TIMES]
    rows += [("b", f"bt{t}", 5.0, float(t)) for t in _B_TIMES]
    rows += [("c", f"ct{t}", 5.0, float(t)) for t in _C_TIMES]
    return interactions(rows)


def test_temporal_fraction_holds_out_the_latest() -> None:
    split = split_interactions(_three_users(), SplitConfig("temporal", holdout=0.2))
    # a: round(10 * 0.2) = 2 → t 8, 9; b: round(5 * 0.2) = 1 → t 4; c: max(1, round(0.6)) = 1.
    assert items_of(split.test, "a") == {"at8", "at9"}
    assert items_of(split.test, "b") == {"bt4"}
    assert items_of(split.test, "c") == {"ct2"}
    assert items_of(split.train, "a") == {f"at{t}" for t in range(8)}
    assert items_of(split.train, "b") == {f"bt{t}" for t in range(4)}
    assert len(split.train) + len(split.test) == 18


def test_temporal_integer_holdout() -> None:
    split = split_interactions(_three_users(), SplitConfig("temporal", holdout=3))
    assert items_of(split.test, "a") == {"at7", "at8", "at9"}
    assert items_of(split.test, "b") == {"bt2", "bt3", "bt4"}
    # c's 3 rows would all be held out, leaving 0 < min_history = 1 training rows: dropped.
    assert "c" not in set(split.train["user"]) | set(split.test["user"])


def test_leave_one_out() -> None:
    split = split_interactions(_three_users(), SplitConfig("leave-one-out"))
    assert items_of(split.test, "a") == {"at9"}
    assert items_of(split.test, "b") == {"bt4"}
    assert items_of(split.test, "c") == {"ct2"}
    assert len(split.test) == 3 and len(split.train) == 15


def test_timestamp_ties_are_broken_by_seed() -> None:
    # Six rows in the same second, one earlier row that is never the last.
    rows = [("t", f"x{n}", 5.0, 100.0) for n in range(6)] + [("t", "early", 5.0, 1.0)]
    frame = interactions(rows)
    held = set()
    for seed in range(20):
        config = SplitConfig("leave-one-out", seed=seed)
        first, again = split_interactions(frame, config), split_interactions(frame, config)
        pd.testing.assert_frame_equal(first.train, again.train)
        pd.testing.assert_frame_equal(first.test, again.test)
        assert len(first.test) == 1 and "early" in items_of(first.train, "t")
        held |= items_of(first.test, "t")
    assert held <= {f"x{n}" for n in range(6)}
    assert len(held) > 1, "different seeds must be able to hold out different tied rows"


def test_without_timestamps_order_is_random_but_seeded() -> None:
    frame = interactions(("n", f"i{n}", 5.0, np.nan) for n in range(8))
    held = set()
    for seed in range(20):
        config = SplitConfig("temporal", holdout=2, seed=seed)
        first, again = split_interactions(frame, config), split_interactions(frame, config)
        pd.testing.assert_frame_equal(first.test, again.test)
        assert len(first.test) == 2 and len(first.train) == 6
        assert items_of(first.train, "n") | items_of(first.test, "n") == set(frame["item"])
        held.add(frozenset(items_of(first.test, "n")))
    assert len(held) > 1, "without timestamps the held-out rows depend on the seed"
    assert held != {frozenset({"i6", "i7"})}, "frame order must not decide"


def test_min_history_drops_users_with_too_few_training_rows() -> None:
    rows = [("short", f"s{t}", 5.0, float(t)) for t in range(3)]  # 2 training rows
    rows += [("long", f"l{t}", 5.0, float(t)) for t in range(4)]  # 3 training rows
    split = split_interactions(interactions(rows), SplitConfig("leave-one-out", min_history=3))
    assert set(split.train["user"]) == {"long"} and set(split.test["user"]) == {"long"}
    assert items_of(split.test, "long") == {"l3"}
    loose = split_interactions(interactions(rows), SplitConfig("leave-one-out", min_history=2))
    assert set(loose.test["user"]) == {"short", "long"}


def test_test_rows_already_seen_in_training_are_dropped() -> None:
    # r: x@1 y@2 z@3 y@4, hold out 2 → z@3 and y@4; y is in training (y@2) → only z is tested.
    rows = [("r", "x", 5.0, 1.0), ("r", "y", 5.0, 2.0), ("r", "z", 5.0, 3.0), ("r", "y", 3.0, 4.0)]
    split = split_interactions(interactions(rows), SplitConfig("temporal", holdout=2))
    assert items_of(split.train, "r") == {"x", "y"}
    assert split.test["item"].tolist() == ["z"]


def test_user_left_without_test_rows_is_not_kept() -> None:
    # c: x@1 y@2 x@3, leave-one-out → test x@3, but x is in training → c has no test row left.
    rows = [("c", "x", 5.0, 1.0), ("c", "y", 5.0, 2.0), ("c", "x", 5.0, 3.0)]
    rows += [("d", "p", 5.0, 1.0), ("d", "q", 5.0, 2.0)]
    split = split_interactions(interactions(rows), SplitConfig("leave-one-out"))
    assert set(split.test["user"]) == {"d"}
    assert set(split.train["user"]) == {"d"}


def test_validation_split_uses_only_the_training_part() -> None:
    frame = interactions((f"v{u}", f"v{u}t{t}", 5.0, float(t)) for u in range(4) for t in range(10))
    config = SplitConfig("temporal", holdout=0.2)
    outer = split_interactions(frame, config)
    val = validation_split(frame, config)
    key = ["user", "item", "timestamp"]
    outer_test = set(map(tuple, outer.test[key].to_numpy().tolist()))
    outer_train = set(map(tuple, outer.train[key].to_numpy().tolist()))
    for part in (val.train, val.test):
        rows = set(map(tuple, part[key].to_numpy().tolist()))
        assert not rows & outer_test
        assert rows <= outer_train
    for u in range(4):
        # Outer: 10 rows → test t8, t9. Inner: 8 rows → round(8 * 0.2) = 2 → test t6, t7.
        assert items_of(outer.test, f"v{u}") == {f"v{u}t8", f"v{u}t9"}
        assert items_of(val.test, f"v{u}") == {f"v{u}t6", f"v{u}t7"}
        assert items_of(val.train, f"v{u}") == {f"v{u}t{t}" for t in range(6)}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"holdout": 0},
        {"holdout": -0.1},
        {"holdout": 1.5},
        {"holdout": float("nan")},
        {"min_history": 0},
        {"method": "random"},
    ],
)
def test_split_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        SplitConfig(**kwargs)  # type: ignore[arg-type]


def test_split_config_accepts_fractions_and_whole_counts() -> None:
    for holdout in (0.1, 0.5, 1, 2.0, 5):
        SplitConfig(holdout=holdout)
    assert "last 2 interactions" in SplitConfig(holdout=2).describe()


# -- 3. baselines -------------------------------------------------------------------------------


def test_popular_ranks_by_distinct_users_and_skips_seen() -> None:
    rows = [("u1", "A", 5, 1), ("u1", "A", 5, 2), ("u2", "A", 5, 1), ("u3", "A", 5, 1)]
    rows += [("u1", "B", 5, 3), ("u2", "B", 5, 2)]
    rows += [("u4", "C", 5, t) for t in range(5)]  # 5 rows but one user
    method = PopularMethod(["D", "C", "B", "A"])
    method.fit(interactions(rows))
    # Distinct users: A 3, B 2, C 1, D 0.
    assert method.recommend(history([]), 4) == ["A", "B", "C", "D"]
    assert method.recommend(history(["B"]), 3) == ["A", "C", "D"]
    assert method.recommend(history(["B"]), 2) == ["A", "C"]


def test_random_is_seeded_distinct_and_unseen() -> None:
    catalogue = [f"i{n}" for n in range(30)]
    seen = history([f"i{n}" for n in range(0, 30, 3)])  # 10 seen
    one, two = RandomMethod(catalogue, seed=7), RandomMethod(catalogue, seed=7)
    lists = [one.recommend(seen, 8) for _ in range(5)]
    assert lists == [two.recommend(seen, 8) for _ in range(5)]
    for out in lists:
        assert len(out) == 8 and len(set(out)) == 8
        assert not set(out) & set(seen["item"])
        assert set(out) <= set(catalogue)
    other = RandomMethod(catalogue, seed=8)
    assert [other.recommend(seen, 8) for _ in range(5)] != lists
    # Asking for more than the 20 unseen items returns all of them, once.
    assert sorted(one.recommend(seen, 25)) == sorted(set(catalogue) - set(seen["item"]))


# Users: u1 {A, B}, u2 {A, B}, u3 {C, D}, u4 {B, C}.
# Item user-sets: A {1,2}, B {1,2,4}, C {3,4}, D {3}. Cosines:
#   A·B = 2/√(2·3) ≈ 0.816, B·C = 1/√(3·2) ≈ 0.408, C·D = 1/√(2·1) ≈ 0.707, others 0.
# Popularity (distinct users): B 3, A 2, C 2, D 1 → order B, A, C, D (ties in catalogue order).
_KNN_ROWS = [
    ("u1", "A", 5, 1),
    ("u1", "B", 5, 2),
    ("u2", "A", 5, 1),
    ("u2", "B", 5, 2),
    ("u3", "C", 5, 1),
    ("u3", "D", 5, 2),
    ("u4", "B", 5, 1),
    ("u4", "C", 5, 2),
]


def _knn(**options: object) -> ItemKNNMethod:
    method = ItemKNNMethod(["A", "B", "C", "D"], **options)  # type: ignore[arg-type]
    method.fit(interactions(_KNN_ROWS))
    return method


def test_item_knn_similarity_by_hand() -> None:
    method = _knn(neighbours=None)
    assert method.similarity is not None
    sim = method.similarity.toarray()
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = 2 / np.sqrt(2 * 3)
    expected[1, 2] = expected[2, 1] = 1 / np.sqrt(3 * 2)
    expected[2, 3] = expected[3, 2] = 1 / np.sqrt(2 * 1)
    np.testing.assert_allclose(sim, expected, atol=1e-6)


def test_item_knn_orders_by_summed_similarity() -> None:
    method = _knn(neighbours=None)
    # Saw A: B scores 0.816, nothing else scores; padding by popularity (B, A, C, D minus seen).
    assert method.recommend(history(["A"]), 1) == ["B"]
    # Saw C: D 0.707 > B 0.408 (popularity alone would say B first).
    assert method.recommend(history(["C"]), 2) == ["D", "B"]
    # Saw B and D: C = 0.408 + 0.707 = 1.115 > A = 0.816.
    assert method.recommend(history(["B", "D"]), 2) == ["C", "A"]


def test_item_knn_neighbours_cut() -> None:
    # One neighbour per row: B keeps only A (0.816 > 0.408), D keeps C.
    # Saw B and D: A = 0.816 (from B) > C = 0.707 (from D): the order flips.
    assert _knn(neighbours=1).recommend(history(["B", "D"]), 2) == ["A", "C"]
    assert _knn(neighbours=None).recommend(history(["B", "D"]), 2) == ["C", "A"]


def test_item_knn_positive_threshold_on_history() -> None:
    # History A (weight 1) and C (weight 5). Threshold 4: only C is liked → D 0.707 > B 0.408.
    # No threshold: B = 0.816 + 0.408 = 1.225 > D = 0.707.
    h = history(["A", "C"], [1.0, 5.0])
    assert _knn(neighbours=None, positive_threshold=4.0).recommend(h, 2) == ["D", "B"]
    assert _knn(neighbours=None).recommend(h, 2) == ["B", "D"]


def test_item_knn_positive_threshold_in_training() -> None:
    # u1, u2: A5 B5; u3, u4: C5 D1. With threshold 4, D has no positives: sim(C, D) = 0.
    rows = [("u1", "A", 5, 1), ("u1", "B", 5, 2), ("u2", "A", 5, 1), ("u2", "B", 5, 2)]
    rows += [("u3", "C", 5, 1), ("u3", "D", 1, 2), ("u4", "C", 5, 1), ("u4", "D", 1, 2)]
    # Popularity counts every row: A 2, B 2, C 2, D 2 → catalogue order A, B, C, D.
    strict = ItemKNNMethod(["A", "B", "C", "D"], neighbours=None, positive_threshold=4.0)
    strict.fit(interactions(rows))
    # Saw C: nothing scores → all padding: A, B, D.
    assert strict.recommend(history(["C"]), 3) == ["A", "B", "D"]
    loose = ItemKNNMethod(["A", "B", "C", "D"], neighbours=None)
    loose.fit(interactions(rows))
    # cos(C, D) = 2 / √(2·2) = 1 → D first, then padding A, B.
    assert loose.recommend(history(["C"]), 3) == ["D", "A", "B"]


def test_item_knn_pads_with_popular_items() -> None:
    method = _knn(neighbours=None)
    # Saw D: only C scores (0.707); then popularity B, A fills the list to k = 3.
    out = method.recommend(history(["D"]), 3)
    assert out == ["C", "B", "A"]
    # k beyond the unseen items: all three unseen, no repeats, never the seen D.
    assert method.recommend(history(["D"]), 10) == ["C", "B", "A"]


# -- 4. the runner ------------------------------------------------------------------------------

# 3 clusters × 20 items; 10 users per cluster. User (c, o) touches items (2o + t) % 20 of
# cluster c at time t for t = 0..11: holdout 0.2 → round(12 · 0.2) = 2 → t = 10, 11 held out.
# Training windows [2o, 2o + 10) cover each cluster item exactly 5 times (10 windows · 10 / 20).
CLUSTERS, PER_CLUSTER, USERS_PER_CLUSTER, TOUCHED = 3, 20, 10, 12


def _item(c: int, j: int) -> str:
    return f"c{c}i{j % PER_CLUSTER:02d}"


def _cluster_data() -> tuple[pd.DataFrame, list[str], dict[str, set[str]], dict[str, set[str]]]:
    catalogue = [_item(c, j) for c in range(CLUSTERS) for j in range(PER_CLUSTER)]
    rows: list[Row] = []
    train: dict[str, set[str]] = {}
    test: dict[str, set[str]] = {}
    for c in range(CLUSTERS):
        for o in range(USERS_PER_CLUSTER):
            user = f"u{c}-{o}"
            touched = [_item(c, 2 * o + t) for t in range(TOUCHED)]
            rows += [(user, item, 5.0, float(t)) for t, item in enumerate(touched)]
            train[user], test[user] = set(touched[:10]), set(touched[10:])
    return interactions(rows), catalogue, train, test


def test_runner_on_clusters() -> None:
    frame, catalogue, train, test = _cluster_data()
    # Seven interactions with unknown items, the latest of all: dropped before the split, so
    # they neither count nor steal the held-out slots.
    ghosts = interactions((f"u0-{n}", f"ghost{n}", 5.0, 1000.0) for n in range(7))
    frame = pd.concat([frame, ghosts], ignore_index=True)
    vectors = np.repeat(np.eye(CLUSTERS, dtype=np.float32), PER_CLUSTER, axis=0)
    row_of = {item: row for row, item in enumerate(catalogue)}
    methods = [
        Recorder(ItemKNNMethod(catalogue)),
        Recorder(RandomMethod(catalogue, seed=3)),
        Recorder(PopularMethod(catalogue)),
    ]
    config = EvalConfig(ks=(10,), threshold=None, split=SplitConfig("temporal", holdout=0.2))
    report = evaluate_recommenders(
        frame, methods, config, catalogue=catalogue, vectors=vectors, row_of=row_of
    )
    assert report.dropped_interactions == 7
    assert report.users == 30
    assert report.train_interactions == 30 * 10 and report.test_interactions == 30 * 2
    for method in methods:
        assert method.histories == train  # the runner hands each method the training rows
        for user, out in method.lists.items():
            assert len(out) == 10 and len(set(out)) == 10
            assert not set(out) & train[user], f"{method.name} recommended a seen item"
    knn, rnd = (report.table().loc[name] for name in ("item-knn", "random"))
    # Every unseen item of the user's cluster co-occurs in some window with a seen one, so it
    # scores > 0 and other clusters score 0: the list is exactly the 10 unseen cluster items,
    # which include both held-out ones.
    for user, out in methods[0].lists.items():
        c = int(user[1])
        assert set(out) == {_item(c, j) for j in range(PER_CLUSTER)} - train[user]
        assert test[user] <= set(out)
    assert knn["Recall@10"] == 1.0 and knn["HitRate@10"] == 1.0
    # Both hits in the top 10: NDCG@10 is at least (1/log2(10) + 1/log2(11)) / (1 + 1/log2(3)).
    assert knn["NDCG@10"] >= (1 / log2(10) + 1 / log2(11)) / (1 + 1 / log2(3)) - 1e-9
    assert knn["NDCG@10"] > rnd["NDCG@10"] and knn["Recall@10"] > rnd["Recall@10"]
    # Random draws 10 of 50 unseen items: expected recall 10/50.
    assert rnd["Recall@10"] < 0.5
    # The union of unseen windows is every item; lists stay in one cluster (identical vectors);
    # every item has 5 training users of 30 → -log2((5 + 1) / (30 + 1)).
    assert knn["Coverage@10"] == pytest.approx(60 / 60)
    assert knn["Diversity@10"] == pytest.approx(0.0, abs=1e-6)
    assert rnd["Diversity@10"] > 0.3
    assert knn["Novelty@10"] == pytest.approx(-log2((5 + 1) / (30 + 1)))


def test_runner_threshold_filters_relevant_items() -> None:
    # t0..t7 train; t8 (weight 5) and t9 (weight 1) held out. The method ranks t9 before t8.
    rows: list[Row] = [("u", f"t{t}", 5.0, float(t)) for t in range(8)]
    rows += [("u", "t8", 5.0, 8.0), ("u", "t9", 1.0, 9.0)]
    # w's held-out t2 weighs exactly the threshold: relevant (weight >= threshold).
    rows += [("w", "t0", 5.0, 0.0), ("w", "t1", 5.0, 1.0), ("w", "t2", 4.0, 2.0)]
    catalogue = [f"t{t}" for t in range(12)]
    fixed = FixedMethod({"u": ["t9", "t8", "t10"], "w": ["t10", "t11", "t9"]})
    split = SplitConfig("temporal", holdout=0.2)  # u: 2 held out; w: max(1, round(0.6)) = 1
    frame = interactions(rows)
    strict = evaluate_recommenders(
        frame, [fixed], EvalConfig(ks=(1, 3), threshold=4.0, split=split), catalogue=catalogue
    )
    m = strict.results[0].metrics
    assert strict.test_interactions == 2 and strict.users == 2
    # u: R = {t8} at rank 2 → HitRate@1 0, MRR 1/2, NDCG@3 = (1/log2(3)) / 1; w: R = {t2}, no hit.
    assert m["HitRate@1"] == pytest.approx((0 + 0) / 2)
    assert m["MRR"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["Recall@3"] == pytest.approx((1 + 0) / 2)
    assert m["NDCG@3"] == pytest.approx((1 / log2(3) + 0) / 2)
    loose = evaluate_recommenders(
        frame, [fixed], EvalConfig(ks=(1, 3), threshold=None, split=split), catalogue=catalogue
    )
    m = loose.results[0].metrics
    assert loose.test_interactions == 3
    # u: R = {t8, t9} → HitRate@1 1, MRR 1, Recall@3 2/2, NDCG@3 = 1.
    assert m["HitRate@1"] == pytest.approx((1 + 0) / 2)
    assert m["MRR"] == pytest.approx((1 + 0) / 2)
    assert m["Recall@3"] == pytest.approx((1 + 0) / 2)
    with pytest.raises(InvalidArgument):
        evaluate_recommenders(
            frame, [fixed], EvalConfig(ks=(1,), threshold=9.0, split=split), catalogue=catalogue
        )


def test_eval_config_rejects_bad_ks() -> None:
    for ks in ((), (0,), (10, -1)):
        with pytest.raises(InvalidArgument):
            EvalConfig(ks=ks)


@pytest.fixture(scope="module")
def hash_rec(hash_index: Path, hash_embedder: HashEmbedder) -> Recommender:
    return Recommender.open(hash_index, embedder=hash_embedder)


def test_engine_method_returns_k_unseen_items(hash_rec: Recommender) -> None:
    ids = [str(i) for i in hash_rec.bundle.ids]
    method = EngineMethod(hash_rec)
    seen = ids[:5]
    h = interactions(("x", item, 4.0, 1e9 + n) for n, item in enumerate(seen))
    out = method.recommend(h, 10)
    assert len(out) == 10 and len(set(out)) == 10
    assert not set(out) & set(seen) and set(out) <= set(ids)
    # Missing timestamps are fine too.
    out = method.recommend(h.assign(timestamp=np.nan), 10)
    assert len(out) == 10 and not set(out) & set(seen)


def test_engine_method_in_the_runner(hash_rec: Recommender) -> None:
    ids = [str(i) for i in hash_rec.bundle.ids]
    rows: list[Row] = []
    train: dict[str, set[str]] = {}
    for u in range(4):
        touched = ids[u * 40 : u * 40 + 8]
        rows += [(f"m{u}", item, 5.0, 1e9 + t) for t, item in enumerate(touched)]
        train[f"m{u}"] = set(touched[:6])  # round(8 · 0.2) = 2 held out
    recorder = Recorder(EngineMethod(hash_rec))
    report = evaluate_recommenders(
        interactions(rows),
        [recorder],
        EvalConfig(ks=(10,), threshold=None, split=SplitConfig("temporal", holdout=0.2)),
        catalogue=ids,
    )
    assert report.users == 4 and report.results[0].name == "content"
    assert recorder.histories == train
    for user, out in recorder.lists.items():
        assert len(out) == 10 and not set(out) & train[user]
    assert 0.0 <= report.results[0].metrics["Recall@10"] <= 1.0


# -- 5. BEIR ------------------------------------------------------------------------------------


def test_search_metrics_graded_by_hand() -> None:
    judged = {"b": 1, "a": 2}  # lower grade first: the ideal ranking must sort the gains
    m = search_metrics(["x", "a", "b"], judged)
    # DCG = 2/log2(3) + 1/log2(4); IDCG = 2/log2(2) + 1/log2(3).
    assert m["nDCG@10"] == pytest.approx((2 / log2(3) + 1 / log2(4)) / (2 / log2(2) + 1 / log2(3)))
    assert m["Recall@100"] == 1.0
    assert m["MRR@10"] == pytest.approx(1 / 2)
    m = search_metrics(["b", "a"], judged)
    assert m["nDCG@10"] == pytest.approx((1 / log2(2) + 2 / log2(3)) / (2 / log2(2) + 1 / log2(3)))
    assert m["MRR@10"] == 1.0


def test_search_metrics_recall_and_mrr_cut_offs() -> None:
    ranked = [f"n{i}" for i in range(150)]
    ranked[0], ranked[99], ranked[100] = "r1", "r2", "r3"
    m = search_metrics(ranked, {"r1": 1, "r2": 1, "r3": 1})
    assert m["Recall@100"] == pytest.approx(2 / 3)  # r3 at rank 101 is beyond the cut
    assert m["MRR@10"] == 1.0
    # Only hit at rank 11: outside nDCG@10 and MRR@10.
    late = [f"n{i}" for i in range(10)] + ["r1"]
    m = search_metrics(late, {"r1": 1})
    assert m["MRR@10"] == 0.0 and m["nDCG@10"] == 0.0 and m["Recall@100"] == 1.0
    # Hit at rank 10: MRR 1/10, nDCG 1/log2(11).
    m = search_metrics(late[1:], {"r1": 1})
    assert m["MRR@10"] == pytest.approx(1 / 10)
    assert m["nDCG@10"] == pytest.approx(1 / log2(11))


def test_load_qrels_and_queries(tmp_path: Path) -> None:
    qrels = tmp_path / "test.tsv"
    qrels.write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n\nq3\td4\t0\n",
        encoding="utf-8",
    )
    assert load_qrels(qrels) == {"q1": {"d1": 1}, "q2": {"d3": 2}}
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        json.dumps({"_id": "q1", "text": "first"}) + "\n\n" + json.dumps({"_id": 7, "text": "x"}),
        encoding="utf-8",
    )
    assert load_queries(queries) == {"q1": "first", "7": "x"}


@pytest.mark.parametrize(
    "content",
    ["", "query-id\tcorpus-id\tscore\nq1\td1\n", "query-id\tcorpus-id\tscore\nq1\td1\thigh\n"],
)
def test_malformed_qrels_raise(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError):
        load_qrels(path)


@pytest.mark.parametrize(
    "content", ["not json\n", json.dumps({"_id": "q1"}) + "\n", json.dumps(["q1", "x"]) + "\n"]
)
def test_malformed_queries_raise(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError):
        load_queries(path)


def test_missing_files_raise(tmp_path: Path) -> None:
    with pytest.raises(CatalogError):
        load_qrels(tmp_path / "nope.tsv")
    with pytest.raises(CatalogError):
        load_queries(tmp_path / "nope.jsonl")


def test_evaluate_search_exact_text_ranks_its_document_first(
    tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    # 20 documents with disjoint vocabularies; a query equal to a document's composed text
    # embeds to that document's own vector (cosine 1), so it ranks first.
    docs = [
        {"_id": f"d{i}", "title": f"title{i}", "text": " ".join(f"w{i}x{j}" for j in range(6))}
        for i in range(20)
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    spec = CatalogSpec(
        path=corpus, id_column="_id", text_template="{title} {text}", metadata_columns=("title",)
    )
    report = build(
        BuildConfig(catalog=spec, name="beirmini", indexes_dir=tmp_path, progress=False),
        embedder=hash_embedder,
    )
    rec = Recommender.open(report.path, embedder=hash_embedder)
    queries = {f"q{i}": f"{docs[i]['title']} {docs[i]['text']}" for i in range(5)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(5)}
    qrels["q-without-text"] = {"d9": 1}  # ignored: no query text
    result = evaluate_search(rec, queries, qrels, k=10)
    assert result.queries == 5
    assert result.metrics == {"nDCG@10": 1.0, "Recall@10": 1.0, "MRR@10": 1.0}
    # q0 also judges a document the collection lacks: it ranks d0 first and misses the other.
    # nDCG = 1 / (1/log2(2) + 1/log2(3)); Recall = 1/2; MRR = 1; averaged with four perfect ones.
    qrels["q0"] = {"d0": 1, "absent": 1}
    m = evaluate_search(rec, queries, qrels, k=10).metrics
    assert m["nDCG@10"] == pytest.approx((1 / (1 / log2(2) + 1 / log2(3)) + 4) / 5)
    assert m["Recall@10"] == pytest.approx((1 / 2 + 4) / 5)
    assert m["MRR@10"] == pytest.approx(1.0)
    with pytest.raises(CatalogError):
        evaluate_search(rec, {"zz": "nothing"}, qrels, k=10)


# -- 6. ANN quality -----------------------------------------------------------------------------


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    return clustered(n, d, seed, centers=16)


@pytest.fixture(scope="module")
def ann_vectors() -> np.ndarray:
    return _clustered(1500, 32)


def test_ann_quality_flat_is_exact(ann_vectors: np.ndarray) -> None:
    searcher = Searcher(build_faiss_index(ann_vectors, "Flat"), ann_vectors)
    quality = ann_quality(searcher, k=10, queries=50)
    assert quality.recall == 1.0 and quality.queries == 50 and quality.k == 10
    assert sweep_values(searcher) == [{}]


def test_ann_quality_ivf_depends_on_nprobe(ann_vectors: np.ndarray) -> None:
    index = build_faiss_index(ann_vectors, "IVF16,Flat")
    searcher = Searcher(index, ann_vectors)
    # Probe queries are midpoints of random pairs, between clusters: one list cannot hold them.
    one = ann_quality(searcher, k=10, queries=100, params={"nprobe": 1})
    assert one.recall < 1.0 and one.params["nprobe"] == 1
    # Probing all 16 lists scans every vector: exact.
    every = ann_quality(searcher, k=10, queries=100, params={"nprobe": 16})
    assert every.recall == 1.0 and every.params["nprobe"] == 16
    assert sweep_values(searcher) == [{"nprobe": v} for v in (1, 2, 4, 8, 16)]


def test_sweep_values_for_hnsw(ann_vectors: np.ndarray) -> None:
    searcher = Searcher(build_faiss_index(ann_vectors[:300], "HNSW16"), ann_vectors[:300])
    assert sweep_values(searcher) == [{"efSearch": v} for v in (16, 32, 64, 128, 256)]
