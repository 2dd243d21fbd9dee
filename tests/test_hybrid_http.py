"""Modes and fusion weights over HTTP (a real uvicorn process) and from the CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_http import Server, assert_error
from tests.test_hybrid import make, user_history

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("hybrid-http"))


@pytest.fixture(scope="module")
def client(index: Path) -> Iterator[httpx.Client]:
    with Server(index) as srv, httpx.Client(base_url=srv.url, timeout=30.0) as c:
        yield c


def _history() -> list[dict[str, object]]:
    return [{"item_id": e.item_id, "weight": e.weight} for e in user_history()]


def test_modes_and_fusion_weights(client: httpx.Client) -> None:
    answers = {}
    for mode in ("content", "collaborative", "hybrid", None):
        payload = {"history": _history(), "k": 10, "mode": mode}
        response = client.post("/recommend", json=payload)
        assert response.status_code == 200, response.text
        answers[mode] = [item["id"] for item in response.json()["items"]]
    assert answers[None] == answers["hybrid"]  # the bundle has CF vectors: hybrid by default
    assert answers["content"] != answers["collaborative"]
    # All weight on CF is collaborative mode; weights are the request's to choose.
    only_cf = client.post(
        "/recommend", json={"history": _history(), "k": 10, "fusion": {"collaborative": 1}}
    )
    assert [item["id"] for item in only_cf.json()["items"]] == answers["collaborative"]
    search = client.post("/search", json={"text": "toy story", "k": 5, "mode": "hybrid"})
    assert search.status_code == 200 and search.json()["items"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "field"),
    [
        ("/recommend", {"history": [1], "mode": "telepathy"}, 422, "mode"),
        ("/recommend", {"history": [1], "fusion": {"content": -1}}, 422, "fusion.content"),
        ("/recommend", {"history": [1], "fusion": {"lexical": 0}}, 422, "fusion"),
        ("/search", {"text": "toy", "mode": "collaborative"}, 422, "mode"),
    ],
)
def test_bad_modes_and_weights_are_refused(
    client: httpx.Client, path: str, payload: dict[str, object], status: int, field: str
) -> None:
    assert_error(client.post(path, json=payload), status, field)


def test_cli_mode_and_fusion(index: Path) -> None:
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", "recommend", "--index", str(index), "-k", "5",
             "--history", "1:5,2:4,3:4", *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    collab = run("--mode", "collaborative", "--json")
    assert collab.returncode == 0, collab.stderr
    same = run("--fusion", "collaborative=1", "--json")
    assert same.stdout == collab.stdout
    bad = run("--fusion", "colaborative=1")
    assert bad.returncode != 0 and "--fusion" in bad.stderr and "Traceback" not in bad.stderr
