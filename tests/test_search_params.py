"""Per-request search parameters (efSearch, nprobe): engine, Python facade and HTTP.

Bundles of 5,000 movies embedded by the hash embedder, on a deliberately weak HNSW (``HNSW8``,
whose recall at efSearch = k is far from 1) and on ``IVF64,Flat``. Recall is measured against
the bundle's exact twin (:meth:`Searcher.exact`) and counts a hit when its exact score reaches
the k-th exact score (the hash embedder gives some items identical vectors: ties).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from engine import HashEmbedder, InvalidArgument, QueryOptions, Recommender, RecommenderConfig
from engine.ann import Searcher
from tests.conftest import hash_bundles
from tests.test_http import Server, assert_error

ITEMS = 5000
K = 10
CONTENT = QueryOptions(mode="content")  # dense search only: BM25 fusion would mask the index


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Index roots of the same 5,000 movies: ``hnsw`` (HNSW8) and ``ivf`` (IVF64,Flat)."""
    return hash_bundles(
        tmp_path_factory.mktemp("search-params"), ITEMS, {"hnsw": "HNSW8", "ivf": "IVF64,Flat"}
    )


@pytest.fixture(scope="module")
def recs(bundles: dict[str, Path]) -> dict[str, Recommender]:
    return {
        name: Recommender.open(path, embedder=HashEmbedder(64)) for name, path in bundles.items()
    }


def midpoints(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``float32 (n, d)`` unit midpoints of random item pairs: queries not in the index."""
    rng = np.random.default_rng(seed)
    a, b = rng.choice(len(vectors), (2, n))
    q = vectors[a] + vectors[b]
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def recall(searcher: Searcher, queries: np.ndarray, rows: np.ndarray) -> float:
    """Share of ``rows`` (``int64 (m, K)``) whose exact score reaches the exact K-th score."""
    exact_scores, _ = searcher.exact(queries, K)
    vectors = np.asarray(searcher.vectors)
    scores = np.einsum("qd,qkd->qk", queries, vectors[rows])
    return float(np.mean(scores >= exact_scores[:, -1:] - 1e-5))


@pytest.mark.parametrize(
    ("name", "key", "low", "mid", "high"),
    [("hnsw", "efSearch", 10, 64, 512), ("ivf", "nprobe", 1, 16, 64)],
)
def test_more_search_effort_per_request_gives_more_recall(
    recs: dict[str, Recommender], name: str, key: str, low: int, mid: int, high: int
) -> None:
    searcher = recs[name].searcher
    queries = midpoints(np.asarray(searcher.vectors), 300, seed=0)
    measured = {}
    for value in (low, mid, high):
        _, rows = searcher.with_params({key: value}).search(queries, K)
        measured[value] = recall(searcher, queries, rows)
    assert measured[low] <= measured[mid] + 0.01 <= measured[high] + 0.02, measured
    assert measured[high] >= 0.98, measured
    assert measured[low] <= measured[high] - 0.15, measured
    # The view is one request's: the searcher's own defaults are untouched.
    assert searcher.default_params == recs[name].bundle.manifest.index.search_params


@pytest.mark.parametrize(
    ("name", "key", "low", "high"), [("hnsw", "efSearch", 10, 512), ("ivf", "nprobe", 1, 64)]
)
def test_facade_search_uses_the_request_parameters(
    recs: dict[str, Recommender], name: str, key: str, low: int, high: int
) -> None:
    rec = recs[name]
    titles = rec.bundle.items["title"].astype(str).tolist()
    rng = np.random.default_rng(1)
    texts = [f"{titles[a]} {titles[b]}" for a, b in rng.choice(len(titles), (150, 2))]
    queries = np.stack([rec.embed_text(t, field="text") for t in texts])
    found = {}
    for value in (low, high):
        options = dataclasses.replace(CONTENT, search_params={key: value})
        ids = [rec.search(t, K, options=options).ids for t in texts]
        found[value] = np.array([[rec.bundle.row_of[i] for i in row] for row in ids])
    low_recall = recall(rec.searcher, queries, found[low])
    high_recall = recall(rec.searcher, queries, found[high])
    assert high_recall >= 0.98 and low_recall <= high_recall - 0.1, (low_recall, high_recall)


def test_concurrent_requests_each_get_their_own_parameters(recs: dict[str, Recommender]) -> None:
    rec = recs["hnsw"]
    titles = rec.bundle.items["title"].astype(str).tolist()
    texts = [f"{titles[i]} {titles[i + 1]}" for i in range(0, 400, 2)]
    low = dataclasses.replace(CONTENT, search_params={"efSearch": 10})
    high = dataclasses.replace(CONTENT, search_params={"efSearch": 512})
    want = {(t, "low"): rec.search(t, K, options=low).ids for t in texts} | {
        (t, "high"): rec.search(t, K, options=high).ids for t in texts
    }
    differ = [t for t in texts if want[(t, "low")] != want[(t, "high")]]
    assert len(differ) >= 20, "too few queries tell the two settings apart"
    start = threading.Barrier(8)

    def run(worker: int) -> list[tuple[str, str, list[str]]]:
        start.wait()
        which = "low" if worker % 2 else "high"
        options = low if which == "low" else high
        return [(t, which, rec.search(t, K, options=options).ids) for t in differ * 2]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(run, range(8)) for a in batch]
    wrong = [(t, which) for t, which, ids in answers if ids != want[(t, which)]]
    assert not wrong, wrong[:5]


def test_parameters_that_do_not_apply_are_ignored(
    recs: dict[str, Recommender], hash_index: Path
) -> None:
    flat = Recommender.open(hash_index, embedder=HashEmbedder(64))
    cases = [
        (recs["hnsw"], {"nprobe": 1}),
        (recs["ivf"], {"efSearch": 10}),
        (flat, {"efSearch": 1, "nprobe": 1}),
    ]
    for rec, params in cases:
        for text in ("space adventure", "romantic comedy in Paris", "Heat (1995)"):
            default = rec.search(text, K, options=CONTENT).ids
            given = rec.search(
                text, K, options=dataclasses.replace(CONTENT, search_params=params)
            ).ids
            assert given == default, (rec.bundle.manifest.index.factory, params, text)


def test_nprobe_above_nlist_probes_every_list(recs: dict[str, Recommender]) -> None:
    searcher = recs["ivf"].searcher
    queries = midpoints(np.asarray(searcher.vectors), 50, seed=2)
    all_lists = searcher.with_params({"nprobe": 64}).search(queries, K)[1]
    assert np.array_equal(searcher.with_params({"nprobe": 65_536}).search(queries, K)[1], all_lists)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"efSearch": 0}, "search_params.efSearch"),
        ({"efSearch": 4097}, "search_params.efSearch"),
        ({"nprobe": 65_537}, "search_params.nprobe"),
        ({"nprobe": 2.5}, "search_params.nprobe"),
        ({"efSearch": True}, "search_params.efSearch"),
        ({"ef_search": 64}, "search_params"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(params: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        QueryOptions(search_params=params)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert str(next(iter(params))) in str(raised.value)


def test_options_keep_a_private_copy(recs: dict[str, Recommender]) -> None:
    params = {"efSearch": 10}
    options = QueryOptions(search_params=params)
    params["efSearch"] = 4000
    assert options.search_params == {"efSearch": 10}


def test_config_search_params_still_apply_under_request_ones(bundles: dict[str, Path]) -> None:
    rec = Recommender.open(
        bundles["ivf"],
        embedder=HashEmbedder(64),
        config=RecommenderConfig(search_params={"nprobe": 1}),
    )
    assert rec.searcher.default_params["nprobe"] == 1
    view = rec.searcher.with_params({"nprobe": 32})
    assert view.default_params["nprobe"] == 32 and view.index is rec.searcher.index
    assert rec.searcher.with_params(None) is rec.searcher


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(bundles: dict[str, Path]) -> Iterator[httpx.Client]:
    with (
        Server(bundles["hnsw"]) as srv,
        httpx.Client(base_url=srv.url, timeout=30.0) as c,
    ):
        yield c


def test_http_and_facade_agree(client: httpx.Client, recs: dict[str, Recommender]) -> None:
    rec = recs["hnsw"]
    titles = rec.bundle.items["title"].astype(str).tolist()
    texts = [f"{titles[i]} {titles[i + 7]}" for i in range(0, 120, 3)]
    differ = 0
    for text in texts:
        answers = {}
        for ef in (10, 512):
            options = dataclasses.replace(CONTENT, search_params={"efSearch": ef})
            body = {"text": text, "k": K, "mode": "content", "search_params": {"ef_search": ef}}
            response = client.post("/search", json=body)
            assert response.status_code == 200, response.text
            got = [item["id"] for item in response.json()["items"]]
            assert got == rec.search(text, K, options=options).ids
            answers[ef] = got
        differ += answers[10] != answers[512]
    assert differ >= 5, "the two settings should differ on some queries"
    body = {"interests": texts[0], "k": K, "mode": "content", "search_params": {"ef_search": 10}}
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    options = dataclasses.replace(CONTENT, search_params={"efSearch": 10})
    want = rec.recommend(interests=texts[0], k=K, options=options).ids
    assert [item["id"] for item in response.json()["items"]] == want
    item = rec.bundle.ids[3]
    response = client.get(f"/items/{item}/similar", params={"k": K, "ef_search": 10})
    assert response.status_code == 200, response.text
    want = rec.similar(str(item), K, options=QueryOptions(search_params={"efSearch": 10})).ids
    assert [i["id"] for i in response.json()["items"]] == want


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/search", {"text": "heat", "search_params": {"ef_search": 0}}, "search_params.ef_search"),
        (
            "/search",
            {"text": "heat", "search_params": {"ef_search": 5000}},
            "search_params.ef_search",
        ),
        ("/search", {"text": "heat", "search_params": {"nprobe": "many"}}, "search_params.nprobe"),
        ("/search", {"text": "heat", "search_params": {"efSearch": 64}}, "search_params.efSearch"),
        (
            "/recommend",
            {"interests": "heat", "search_params": {"nprobe": -1}},
            "search_params.nprobe",
        ),
        ("/recommend", {"interests": "heat", "search_params": 64}, "search_params"),
    ],
)
def test_http_refuses_bad_parameters_naming_the_field(
    client: httpx.Client, path: str, body: dict[str, object], field: str
) -> None:
    assert_error(client.post(path, json=body), 422, field)


@pytest.mark.parametrize(
    ("query", "field"), [({"ef_search": 0}, "ef_search"), ({"nprobe": 70_000}, "nprobe")]
)
def test_http_similar_refuses_bad_parameters(
    client: httpx.Client, recs: dict[str, Recommender], query: dict[str, int], field: str
) -> None:
    item = recs["hnsw"].bundle.ids[0]
    assert_error(client.get(f"/items/{item}/similar", params=query), 422, field)
