"""Filtered search: exclusion and filters inside the FAISS search, exactly min(k, eligible) hits,
on exact and approximate indexes alike."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Filter, HashEmbedder, HistoryEvent, InvalidArgument, Recommender
from engine.ann import Searcher
from indexer.faiss_build import build_faiss_index
from indexer.sample import SAMPLE_DIR
from tests.conftest import clustered, movies_slice, sample_build

FACTORIES = ["Flat", "HNSW16", "IVF16,Flat", "IVF16,SQ8"]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(3000, 32)


@pytest.mark.parametrize("factory", FACTORIES)
def test_selector_restricts_results_and_fills_k(vectors: np.ndarray, factory: str) -> None:
    searcher = Searcher(build_faiss_index(vectors, factory), vectors)
    queries = clustered(20, 32, seed=1)
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[::7] = True  # ~430 rows allowed
    _, rows = searcher.search(queries, 25, allowed)
    assert rows.shape == (20, 25)
    assert (rows >= 0).all(), "every query must get k hits when k <= eligible"
    assert allowed[rows].all()
    for row in rows:
        assert len(set(row.tolist())) == 25


@pytest.mark.parametrize("factory", FACTORIES)
def test_fewer_eligible_than_k_returns_all_of_them(vectors: np.ndarray, factory: str) -> None:
    searcher = Searcher(build_faiss_index(vectors, factory), vectors)
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[[3, 500, 1999, 2500]] = True
    scores, rows = searcher.search(clustered(3, 32, seed=2), 10, allowed)
    for score_row, row in zip(scores, rows, strict=True):
        assert sorted(row[:4].tolist()) == [3, 500, 1999, 2500]
        assert (row[4:] == -1).all() and np.isneginf(score_row[4:]).all()
        assert (np.diff(score_row[:4]) <= 1e-6).all(), "hits are ranked best first"


def test_large_selective_filter_on_hnsw_falls_back_to_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above the exact-scan size, a filter that starves HNSW's candidates still yields k hits."""
    monkeypatch.setattr("engine.ann.EXACT_SCAN_MAX_ROWS", 100)
    data = clustered(4000, 16, seed=3)
    searcher = Searcher(build_faiss_index(data, "HNSW8"), data, {"efSearch": 16})
    allowed = np.zeros(len(data), dtype=bool)
    allowed[np.random.default_rng(0).choice(len(data), 150, replace=False)] = True
    queries = clustered(30, 16, seed=4)
    _, rows = searcher.search(queries, 40, allowed)
    _, exact_rows = searcher.exact(queries, 40, allowed)
    assert (rows >= 0).all() and allowed[rows].all()
    # Exact twin agreement: the top hit is the true nearest allowed row.
    assert (rows[:, 0] == exact_rows[:, 0]).mean() >= 0.95


def test_exact_twin_is_exact(vectors: np.ndarray) -> None:
    searcher = Searcher(build_faiss_index(vectors, "HNSW16"), vectors)
    query = clustered(1, 32, seed=5)
    _, rows = searcher.exact(query, 10)
    brute = np.argsort(-(vectors @ query[0]))[:10]
    assert rows[0].tolist() == brute.tolist()


@pytest.fixture(scope="module", params=["Flat", "HNSW32", "HNSW32,SQfp16", "IVF16,Flat"])
def recommender(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Recommender:
    import pandas as pd

    from indexer.build import build

    work = tmp_path_factory.mktemp("rec")
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    catalog = movies_slice(work, movies["movieId"][:1500].tolist())
    embedder = HashEmbedder(48)
    build(sample_build(work / "idx", catalog, "m", factory=request.param), embedder)
    return Recommender.open(work / "idx" / "m", embedder=embedder)


def test_history_larger_than_k_with_few_eligible(recommender: Recommender) -> None:
    ids = recommender.bundle.ids
    genres = recommender.bundle.items["genres"]
    # Documentaries are rare in the first 1,500 movies: a filter that leaves few eligible items.
    documentary = [str(i) for i, g in zip(ids, genres, strict=True) if "Documentary" in list(g)]
    assert 5 <= len(documentary) <= 60
    history = [HistoryEvent(i, 4.0) for i in documentary[:3]] + [
        HistoryEvent(str(i), 5.0) for i in ids[:40]
    ]
    k = 20
    results = recommender.recommend(
        history, k=k, filters=[Filter("genres", eq="Documentary")], exclude=[documentary[3]]
    )
    seen = {e.item_id for e in history} | {documentary[3]}
    eligible = set(documentary) - seen
    assert len(results.items) == min(k, len(eligible))
    assert not seen & set(results.ids)
    assert set(results.ids) <= eligible


def test_exactly_k_with_many_eligible_and_long_history(recommender: Recommender) -> None:
    ids = [str(i) for i in recommender.bundle.ids]
    history = [HistoryEvent(i, 3.0 + (n % 3)) for n, i in enumerate(ids[:300])]
    results = recommender.recommend(history, k=50, exclude=ids[300:310])
    assert len(results.ids) == 50 == len(set(results.ids))
    assert not set(results.ids) & set(ids[:310])


def test_range_and_membership_filters(recommender: Recommender) -> None:
    results = recommender.recommend(
        [HistoryEvent(str(recommender.bundle.ids[0]), 5.0)],
        k=15,
        filters=[
            Filter("popularity", gte=20, lt=100),
            Filter("genres", any=("Comedy", "Romance")),
        ],
    )
    assert len(results.items) == 15
    for item in results.items:
        assert 20 <= item.metadata["popularity"] < 100
        assert {"Comedy", "Romance"} & set(item.metadata["genres"])


def test_filter_errors_name_the_field(recommender: Recommender) -> None:
    with pytest.raises(InvalidArgument) as info:
        recommender.search("x", filters=[Filter("year", eq=1995)])
    assert info.value.field == "filters[0].field" and "year" in info.value.message
    with pytest.raises(InvalidArgument, match="range filter on list field"):
        recommender.search("x", filters=[Filter("genres", gt=1)])
    with pytest.raises(InvalidArgument, match="non-numeric"):
        recommender.search("x", filters=[Filter("title", lt=3)])
    with pytest.raises(InvalidArgument, match="exactly one"):
        Filter("genres", eq="A", any=("B",))
    with pytest.raises(InvalidArgument, match="not a number"):
        recommender.search("x", filters=[Filter("popularity", eq="many")])


def test_similar_never_returns_the_item_itself(recommender: Recommender) -> None:
    item = str(recommender.bundle.ids[10])
    results = recommender.similar(item, k=30)
    assert item not in results.ids and len(results.ids) == 30
    scores = [i.score for i in results.items]
    assert scores == sorted(scores, reverse=True)


def test_index_types_agree_with_exact_on_plain_queries(recommender: Recommender) -> None:
    vectors = np.asarray(recommender.bundle.vectors[:50])
    _, approx = recommender.searcher.search(vectors, 10)
    _, exact = recommender.searcher.exact(vectors, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9
