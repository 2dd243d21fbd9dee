"""Query strategies, explanations and re-ranking options over HTTP (a real uvicorn process)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from engine import CrossEncoderReranker
from tests.test_http import Server, assert_error
from tests.test_rerank import make_tiny_cross_encoder


@pytest.fixture(scope="module")
def client(hash_index: Path) -> Iterator[httpx.Client]:
    with (
        Server(hash_index, VECREC_MAX_K="100") as srv,
        httpx.Client(base_url=srv.url, timeout=30.0) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def ids(client: httpx.Client) -> list[str]:
    """The 30 most popular ids of the slice (the popularity fallback's answer)."""
    body = client.post("/recommend", json={"k": 30}).json()
    return [item["id"] for item in body["items"]]


def _title(client: httpx.Client, item_id: str) -> str:
    return str(client.get(f"/items/{item_id}").json()["metadata"]["title"])


@pytest.mark.parametrize("strategy", ["multi_interest", "best_score"])
def test_recommend_with_strategy_explain_and_rerank(
    client: httpx.Client, ids: list[str], strategy: str
) -> None:
    history = [{"item_id": ids[n], "weight": 1 + n % 5} for n in range(8)]
    history.append({"item_id": ids[8], "weight": -2})  # a dislike: never a reason
    liked = set(ids[:8])
    payload = {
        "history": history,
        "k": 10,
        "strategy": strategy,
        "max_interests": 3,
        "explain": True,
        "rerank": {
            "mmr_lambda": 0.6,
            "crowding": {"field": "genres", "max_per_value": 2},
            "boosts": [{"field": "popularity", "weight": 0.5}],
            "max_boost": 1.3,
        },
    }
    response = client.post("/recommend", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    got = [item["id"] for item in body["items"]]
    assert body["source"] == "history" and 1 <= len(got) <= 10 == payload["k"]
    assert len(set(got)) == len(got) and not set(got) & set(ids[:9])
    genres = Counter(g for item in body["items"] for g in item["metadata"]["genres"])
    assert max(genres.values()) <= 2, genres
    titles = {i: _title(client, i) for i in liked}
    for item in body["items"]:
        # Boosted relevance: ((cos + 1) / 2) · m with m ≤ max_boost.
        assert 0.0 <= item["score"] <= 1.3 + 1e-6
        assert item["reasons"], item
        assert sum(r["share"] for r in item["reasons"]) <= 1 + 1e-6
        for reason in item["reasons"]:
            assert reason["kind"] == "item" and 0 < reason["share"] <= 1
            assert reason["item_id"] in liked, reason
            assert reason["label"] == titles[reason["item_id"]]

    # Without explain there are no reasons; the ranking is the same.
    quiet = client.post("/recommend", json={**payload, "explain": False}).json()
    assert [item["id"] for item in quiet["items"]] == got
    assert all(not item.get("reasons") for item in quiet["items"])


def test_recommend_with_interests_names_the_interests(client: httpx.Client) -> None:
    body = client.post(
        "/recommend",
        json={"interests": "space adventure", "k": 5, "explain": True, "strategy": "best_score"},
    ).json()
    assert body["source"] == "interests" and len(body["items"]) == 5
    reasons = [r for item in body["items"] for r in item["reasons"]]
    assert reasons and all(r["kind"] == "interests" and r["item_id"] is None for r in reasons)


def test_search_accepts_rerank(client: httpx.Client) -> None:
    payload = {
        "text": "toy story",
        "k": 10,
        "rerank": {"mmr_lambda": 0.5, "crowding": {"field": "popularity", "max_per_value": 1}},
    }
    response = client.post("/search", json=payload)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == 10
    popularity = [item["metadata"]["popularity"] for item in items]
    assert len(set(popularity)) == len(popularity), popularity
    # λ = 1 without other stages is the plain ranking.
    plain = client.post("/search", json={"text": "toy story", "k": 10}).json()["items"]
    lam1 = client.post(
        "/search", json={"text": "toy story", "k": 10, "rerank": {"mmr_lambda": 1}}
    ).json()["items"]
    assert [i["score"] for i in lam1] == pytest.approx([i["score"] for i in plain], abs=1e-6)


@pytest.mark.parametrize(
    ("path", "extra", "field"),
    [
        ("/recommend", {"strategy": "magic"}, "strategy"),
        ("/recommend", {"max_interests": 0}, "max_interests"),
        ("/recommend", {"max_interests": 21}, "max_interests"),
        ("/recommend", {"rerank": {"mmr_lambda": 2}}, "rerank.mmr_lambda"),
        (
            "/recommend",
            {"rerank": {"crowding": {"field": "genres", "max_per_value": 0}}},
            "rerank.crowding.max_per_value",
        ),
        (
            "/recommend",
            {"rerank": {"boosts": [{"field": "popularity", "weight": 11}]}},
            "rerank.boosts[0].weight",
        ),
        ("/recommend", {"rerank": {"mmr": 0.5}}, "rerank.mmr"),
        ("/recommend", {"rerank": {"boosts": [{"field": "year", "weight": 1}]}}, "rerank.boosts"),
        (
            "/recommend",
            {"rerank": {"boosts": [{"field": "genres", "weight": 1}]}},
            "rerank.boosts",
        ),
        (
            "/recommend",
            {"rerank": {"crowding": {"field": "year", "max_per_value": 1}}},
            "rerank.crowding",
        ),
        ("/recommend", {"rerank": {"cross_encoder": True}}, "rerank.cross_encoder"),
        ("/search", {"rerank": {"cross_encoder": True}}, "rerank.cross_encoder"),
        ("/search", {"rerank": {"boosts": [{"field": "title", "weight": 1}]}}, "rerank.boosts"),
        ("/search", {"rerank": {"pool_factor": 0}}, "rerank.pool_factor"),
    ],
)
def test_bad_options_name_the_field(
    client: httpx.Client, ids: list[str], path: str, extra: dict, field: str
) -> None:
    base = {"history": ids[:3], "k": 5} if path == "/recommend" else {"text": "toy story", "k": 5}
    assert_error(client.post(path, json={**base, **extra}), 422, field)


def test_cross_encoder_server(hash_index: Path, tmp_path: Path) -> None:
    """VECREC_CROSS_ENCODER names a local model; rerank.cross_encoder then orders by its scores.

    In-process (the app with its lifespan, through Starlette's TestClient): a uvicorn child would
    spend ~15 s importing torch again for this one check.
    """
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    model = make_tiny_cross_encoder(tmp_path / "tiny-ce")
    settings = Settings(index=hash_index, cross_encoder=str(model), max_k=100)
    with TestClient(create_app(settings)) as c:
        payload = {"text": "space adventure", "k": 8, "rerank": {"cross_encoder": True}}
        response = c.post("/search", json=payload)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        plain = c.post("/search", json={"text": "space adventure", "k": 8}).json()["items"]
        history = {"history": [items[0]["id"]], "k": 3, "rerank": {"cross_encoder": True}}
        with_text = c.post("/recommend", json={**history, "interests": "space adventure"})
        assert with_text.status_code == 200, with_text.text
    assert len(items) == 8
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    # The same model here scores the returned texts as the server did.
    local = CrossEncoderReranker(model).score("space adventure", [item["text"] for item in items])
    assert scores == pytest.approx(local.tolist(), abs=1e-5)
    assert np.all((local > 0) & (local < 1))  # a 1-label cross-encoder ends in a sigmoid
    assert [i["id"] for i in items] != [i["id"] for i in plain]
    # A recommendation with interests text is re-scored by the cross-encoder too.
    assert all(0 < item["score"] < 1 for item in with_text.json()["items"])
