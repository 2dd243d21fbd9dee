"""Hybrid recommendations: CF vectors in the bundle, fold-in, fusion, modes, cold start, live rows.

Plumbing runs on the hash embedder over 600 MovieLens movies and the real ratings (the CF
signal is real; the content signal is not, and no test here claims content quality).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import Bundle, BundleCorrupt, HashEmbedder, HistoryEvent, InvalidArgument, Recommender
from engine.changes import ItemFields
from engine.collaborative import (
    CF_VECTORS_FILE,
    ALSConfig,
    CollaborativeModel,
    interaction_matrix,
    train_als,
    train_model,
)
from engine.compaction import compact
from engine.extras import COLLABORATIVE, LEXICAL, parts_of
from engine.fusion import FusionWeights, fuse, minmax
from engine.results import QueryOptions
from engine.writes import update_index
from indexer.build import build
from indexer.sample import SAMPLE_DIR
from tests.conftest import movies_slice, sample_build

N_ITEMS = 600
HYBRID = QueryOptions(mode="hybrid")
CONTENT = QueryOptions(mode="content")
COLLAB = QueryOptions(mode="collaborative")


def embedder() -> HashEmbedder:
    return HashEmbedder(64)


def make(directory: Path, *, collaborative: bool = True, lexical: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    catalog = movies_slice(directory, slice_ids())
    config = dataclasses.replace(
        sample_build(directory / "indexes", catalog, "hyb", factory="Flat"),
        collaborative=collaborative,
        lexical=lexical,
    )
    build(config, embedder())
    return directory / "indexes" / "hyb"


def slice_ids() -> list[str]:
    """600 movies: the 18 nobody rated (cold-start items) and the first rated ones."""
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})["movieId"]
    rated = set(pd.read_csv(SAMPLE_DIR / "ratings.csv", dtype={"movieId": str})["movieId"])
    cold = [m for m in movies if m not in rated]
    return cold + [m for m in movies if m in rated][: N_ITEMS - len(cold)]


@pytest.fixture(scope="module")
def hybrid_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("hybrid"))


def open_rec(root: Path) -> Recommender:
    return Recommender(Bundle.load(root), embedder())


def user_history(n: int = 25) -> list[HistoryEvent]:
    """A real MovieLens user's first ``n`` ratings of movies in the slice."""
    ratings = pd.read_csv(SAMPLE_DIR / "ratings.csv", dtype={"movieId": str, "userId": str})
    inside = ratings[ratings["movieId"].isin(set(slice_ids()))]
    user = inside["userId"].value_counts().index[0]
    rows = inside[inside["userId"] == user].head(n)
    return [HistoryEvent(m, float(r)) for m, r in zip(rows["movieId"], rows["rating"], strict=True)]


# -- the collaborative model --------------------------------------------------------------------


def test_fold_in_serves_a_new_user_the_items_their_taste_group_shares() -> None:
    # Two disjoint groups: users 0-29 interact with items 0-19, users 30-59 with items 20-39.
    rng = np.random.default_rng(0)
    rows = [
        (u, i)
        for u in range(60)
        for i in (range(20) if u < 30 else range(20, 40))
        if rng.random() < 0.5
    ]
    frame = pd.DataFrame({"user": [str(u) for u, _ in rows], "item": [str(i) for _, i in rows]})
    ids = [str(i) for i in range(41)]  # item 40: nobody interacted with it
    model = CollaborativeModel(
        train_als(interaction_matrix(frame, ids), ALSConfig(factors=8, iterations=6)),
        ALSConfig(factors=8),
    )
    assert not model.present[40] and model.present[:40].all()
    user = model.fold_in(np.array([0, 1, 2]), np.ones(3))  # a new user liking three of group A
    assert user is not None
    top = model.search(user, 10, None)
    assert set(top.tolist()) <= set(range(20))
    assert 40 not in model.search(user, 41, None)  # no vector, never retrieved by CF
    assert model.fold_in(np.array([40]), np.ones(1)) is None


def test_positive_threshold_keeps_the_liked_interactions_only() -> None:
    frame = pd.DataFrame(
        {"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "z"], "weight": [5, 2, 4, 1]}
    )
    model = train_model(frame, ["x", "y", "z"], ALSConfig(factors=4, positive_threshold=4))
    assert model.present.tolist() == [True, False, False]  # y and z were only disliked
    with pytest.raises(InvalidArgument, match="positive threshold"):
        train_model(frame, ["x", "y", "z"], ALSConfig(positive_threshold=6))


def test_fusion_normalises_and_scores_missing_signals_by_the_others() -> None:
    assert minmax(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert minmax(np.array([5.0, 5.0])).tolist() == [1.0, 1.0]
    weights = FusionWeights(content=1.0, collaborative=3.0)
    content = np.array([0.1, 0.5, 0.9])
    cf = np.array([10.0, 0.0, 0.0])
    present = np.array([True, True, False])  # the third item has no CF vector
    fused = fuse({"content": (content, None), "collaborative": (cf, present)}, weights)
    np.testing.assert_allclose(fused, [(0 + 3 * 1) / 4, (0.5 + 3 * 0) / 4, 1.0])
    with pytest.raises(InvalidArgument):
        FusionWeights(content=0.0)
    with pytest.raises(InvalidArgument):
        FusionWeights(popularity=-1.0)


# -- the bundle ---------------------------------------------------------------------------------


def test_build_stores_cf_vectors_and_bm25_with_checksums(hybrid_index: Path) -> None:
    bundle = Bundle.load(hybrid_index)
    extras = bundle.manifest.extras
    assert set(extras) == {COLLABORATIVE, LEXICAL}
    files = set(bundle.manifest.files)
    assert {"cf_vectors.npy", "cf_index.faiss"} <= files
    assert any(name.startswith("lexical/") for name in files)
    parts = parts_of(bundle)
    assert parts.collaborative is not None and parts.lexical is not None
    assert parts.collaborative.vectors.shape == (len(bundle), ALSConfig().factors)
    # Items nobody rated have no CF vector; the slice has some.
    unrated = bundle.popularity == 0
    assert unrated.any()
    assert not parts.collaborative.present[unrated].any()
    assert extras[COLLABORATIVE]["items_with_vectors"] == int((~unrated).sum())


def test_a_damaged_cf_file_is_refused(tmp_path: Path) -> None:
    root = make(tmp_path, lexical=False)
    path = next(p for p in root.iterdir() if p.is_dir()) / CF_VECTORS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleCorrupt, match=CF_VECTORS_FILE):
        Bundle.load(root)


def test_bundles_without_extras_load_and_default_to_content(tmp_path: Path) -> None:
    root = make(tmp_path, collaborative=False, lexical=False)
    manifest = json.loads(next(root.glob("*/manifest.json")).read_text())
    assert manifest["extras"] == {}
    del manifest["extras"]  # a bundle written before issue 9
    next(root.glob("*/manifest.json")).write_text(json.dumps(manifest))
    rec = open_rec(root)
    history = user_history()
    assert rec.recommend(history, k=10).ids == rec.recommend(history, k=10, options=CONTENT).ids
    with pytest.raises(InvalidArgument) as info:
        rec.recommend(history, k=10, options=COLLAB)
    assert info.value.field == "mode"
    with pytest.raises(InvalidArgument):
        QueryOptions(mode="telepathy")


# -- queries ------------------------------------------------------------------------------------


def test_modes_differ_and_hybrid_is_the_default_with_cf(hybrid_index: Path) -> None:
    rec = open_rec(hybrid_index)
    history = user_history()
    seen = {e.item_id for e in history}
    default = rec.recommend(history, k=10)
    assert default.ids == rec.recommend(history, k=10, options=HYBRID).ids
    content = rec.recommend(history, k=10, options=CONTENT).ids
    collab = rec.recommend(history, k=10, options=COLLAB).ids
    assert len(set(default.ids)) == 10 and not seen & set(default.ids + content + collab)
    assert collab != content
    # Collaborative results are the fold-in's top items, in order.
    bundle = rec.bundle
    cf = parts_of(bundle).collaborative
    assert cf is not None
    rows = np.array([bundle.row_of[e.item_id] for e in history])
    user = cf.fold_in(rows, np.ones(len(rows)))  # untimed events: confidence 1 each
    assert user is not None
    allowed = np.ones(len(bundle), dtype=bool)
    allowed[rows] = False
    expected = [str(bundle.ids[r]) for r in cf.search(user, 10, allowed)]
    assert collab == expected


def test_a_user_with_only_interests_gets_content_and_popularity(hybrid_index: Path) -> None:
    rec = open_rec(hybrid_index)
    results = rec.recommend([], interests="Toy Story (1995)", k=10)
    assert results.source == "interests"
    assert "1" in results.ids  # the title named; the lexical and content signals agree
    assert rec.recommend([], k=5).source == "popularity"


def test_items_without_interactions_still_come_back_through_content(hybrid_index: Path) -> None:
    rec = open_rec(hybrid_index)
    bundle = rec.bundle
    cold = np.flatnonzero(bundle.popularity == 0)
    row = int(cold[0])
    title = str(bundle.item_record(row)["title"])
    assert not parts_of(bundle).collaborative.present[row]  # type: ignore[union-attr]
    results = rec.recommend([], interests=title, k=10, options=HYBRID)
    assert str(bundle.ids[row]) in results.ids


def test_live_rows_are_served_and_compaction_carries_cf_and_bm25(tmp_path: Path) -> None:
    root = make(tmp_path)
    before = open_rec(root)
    history = user_history()
    expected_collab = before.recommend(history, k=10, options=COLLAB).ids
    new = ItemFields("zz1", {"title": "Quixotic Zeppelin Lighthouse (2031)", "genres": "Sci-Fi"})
    gone = next(i for i in reversed(slice_ids()) if i not in {e.item_id for e in history})
    update_index(root, [new], [gone], embedder(), policy=None)
    live = open_rec(root)
    # Appended live, it has no CF vector and no BM25 entry yet: content serves it.
    assert "zz1" in live.recommend([], interests="quixotic zeppelin", k=10, options=HYBRID).ids
    assert live.search("quixotic zeppelin", k=1).ids == ["zz1"]
    compact(root)
    after = open_rec(root)
    assert after.bundle.manifest.extras.keys() == {COLLABORATIVE, LEXICAL}
    # CF vectors followed their rows (the deleted item's is gone).
    parts = parts_of(after.bundle)
    old = parts_of(before.bundle).collaborative
    assert parts.collaborative is not None and parts.lexical is not None and old is not None
    kept = [i for i in before.bundle.ids if i != gone]
    np.testing.assert_array_equal(
        parts.collaborative.vectors[[after.bundle.row_of[i] for i in kept]],
        old.vectors[[before.bundle.row_of[i] for i in kept]],
    )
    got = after.recommend(history, k=10, options=COLLAB).ids
    assert len(set(got) & set(expected_collab)) >= 8 and gone not in got
    assert not parts.collaborative.present[after.bundle.row_of["zz1"]]
    # The BM25 index now holds the new item's words.
    scores = parts.lexical.scores("zeppelin")
    assert int(np.argmax(scores)) == after.bundle.row_of["zz1"]
