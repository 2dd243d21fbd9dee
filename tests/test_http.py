"""The HTTP API served by a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn api.app:create_app --factory`` in a child process, stopped on exit."""

    def __init__(self, index: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "VECREC_INDEX": str(index), **env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # Drained all the time: a server whose log pipe fills up blocks on its next log line.
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    @property
    def output(self) -> str:
        """Everything the server has written to stdout and stderr so far."""
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reader.join(timeout=5)


@pytest.fixture(scope="module")
def server(hash_index: Path) -> Iterator[Server]:
    with Server(hash_index, VECREC_MAX_K="100") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def ids(client: httpx.Client) -> list[str]:
    """A few ids, taken from the popularity fallback (the most-rated movies of the slice)."""
    body = client.post("/recommend", json={"k": 20}).json()
    return [item["id"] for item in body["items"]]


def assert_error(response: httpx.Response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "Traceback" not in response.text
    assert body["detail"] and isinstance(body["detail"], str)
    if field is not None:
        assert body["field"] == field, body
        assert field.split("[")[0].split(".")[0] in body["detail"], body
    return body


def test_health_and_index(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == 600 and health["index"] == "hashml"
    manifest = client.get("/index").json()
    assert manifest["item_count"] == 600 and manifest["version"] == health["version"]
    assert "sha256" in manifest["files"]["vectors.npy"]


def test_openapi_docs(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    for path in (
        "/recommend",
        "/search",
        "/items/{item_id}",
        "/items/{item_id}/similar",
        "/health",
        "/index",
    ):
        assert path in schema["paths"]
    assert "RecommendRequest" in schema["components"]["schemas"]


def test_recommend(client: httpx.Client, ids: list[str]) -> None:
    history = [{"item_id": ids[0], "weight": 5, "timestamp": 1_500_000_000}, ids[1], int(ids[2])]
    body = client.post("/recommend", json={"history": history, "k": 7, "exclude": [ids[3]]}).json()
    got = [item["id"] for item in body["items"]]
    assert body["source"] == "history" and len(got) == 7 == len(set(got))
    assert not set(got) & set(ids[:4])
    first = body["items"][0]
    assert set(first) == {"id", "score", "text", "metadata", "reasons"}
    assert "title" in first["metadata"] and first["reasons"] == []  # no explain: no reasons
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_recommend_reports_unknown_and_falls_back(client: httpx.Client) -> None:
    body = client.post("/recommend", json={"history": ["no-such-movie"], "k": 3}).json()
    assert body["unknown_ids"] == ["no-such-movie"] and body["source"] == "popularity"
    assert len(body["items"]) == 3


def test_filters_over_http(client: httpx.Client, ids: list[str]) -> None:
    body = client.post(
        "/recommend",
        json={
            "history": [ids[0]],
            "k": 10,
            "filters": [{"field": "genres", "eq": "Comedy"}, {"field": "popularity", "gte": 10}],
        },
    ).json()
    assert len(body["items"]) == 10
    for item in body["items"]:
        assert "Comedy" in item["metadata"]["genres"] and item["metadata"]["popularity"] >= 10


def test_items_and_similar(client: httpx.Client, ids: list[str]) -> None:
    item = client.get(f"/items/{ids[0]}").json()
    assert item["id"] == ids[0] and item["text"]
    similar = client.get(
        f"/items/{ids[0]}/similar",
        params={"k": 4, "filters": '[{"field": "genres", "any": ["Drama", "Comedy"]}]'},
    ).json()
    assert len(similar["items"]) == 4 and ids[0] not in [i["id"] for i in similar["items"]]
    for hit in similar["items"]:
        assert {"Drama", "Comedy"} & set(hit["metadata"]["genres"])


def test_search(client: httpx.Client) -> None:
    body = client.post("/search", json={"text": "toy story", "k": 5}).json()
    assert body["source"] == "text" and len(body["items"]) == 5


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/recommend", {"k": 0}, "k"),
        ("/recommend", {"k": 10**9}, "k"),
        ("/recommend", {"k": "ten"}, "k"),
        ("/recommend", {"history": [{"item_id": "1", "weight": "heavy"}]}, "history[0].weight"),
        ("/recommend", {"history": [{"weight": 2}]}, "history[0].item_id"),
        ("/recommend", {"kk": 5}, "kk"),
        ("/recommend", {"filters": [{"field": "year", "eq": 1995}]}, "filters[0].field"),
        ("/recommend", {"filters": [{"field": "genres", "eq": "A", "gt": 1}]}, "filters[0]"),
        ("/recommend", {"filters": [{"field": "genres", "gte": 1}]}, "filters[0]"),
        ("/recommend", {"interests": "x" * 10_001}, "interests"),
        ("/search", {"text": ""}, "text"),
        ("/search", {"k": 5}, "text"),
    ],
)
def test_bad_requests_name_the_field(
    client: httpx.Client, path: str, payload: dict, field: str
) -> None:
    assert_error(client.post(path, json=payload), 422, field)


def test_nan_weight_is_refused(client: httpx.Client) -> None:
    raw = '{"history": [{"item_id": "1", "weight": NaN}], "k": 3}'
    response = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, None)
    assert "weight" in response.json()["field"] or "body" in response.json()["field"]


def test_empty_and_malformed_bodies(client: httpx.Client) -> None:
    assert_error(client.post("/recommend"), 422, "body")
    bad = client.post(
        "/recommend", content="{not json", headers={"content-type": "application/json"}
    )
    assert_error(bad, 422, None)


def test_unknown_item_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/items/nope"), 404, "item_id")
    assert_error(client.get("/items/nope/similar"), 404, "item_id")
    assert client.get("/no/such/route").status_code == 404


def test_bad_query_parameters(client: httpx.Client, ids: list[str]) -> None:
    assert_error(client.get(f"/items/{ids[0]}/similar", params={"k": 0}), 422, "k")
    assert_error(client.get(f"/items/{ids[0]}/similar", params={"filters": "[{"}), 422, "filters")


def test_server_refuses_a_tampered_bundle(hash_index: Path, tmp_path: Path) -> None:
    import shutil

    from engine.bundle import resolve_bundle_dir

    copy = tmp_path / "tampered"
    shutil.copytree(hash_index, copy)
    vectors = resolve_bundle_dir(copy) / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-5] ^= 0xFF
    vectors.write_bytes(bytes(data))
    srv = Server(copy)
    try:
        with pytest.raises(RuntimeError, match="checksum"):
            srv.wait_ready(timeout=60)
    finally:
        srv.stop()


@pytest.mark.slow
def test_real_model_server(real_index: Path) -> None:
    """The main job's configuration: real MiniLM embedding queries inside the server."""
    with Server(real_index) as srv, httpx.Client(base_url=srv.url, timeout=60.0) as c:
        body = c.post("/search", json={"text": "space adventure", "k": 10}).json()
        genres = [set(item["metadata"]["genres"]) for item in body["items"]]
        assert sum("Sci-Fi" in g for g in genres) >= 7
        body = c.post(
            "/recommend",
            json={"history": [{"item_id": "1", "weight": 5}], "interests": "toys", "k": 5},
        ).json()
        assert body["source"] == "history+interests" and len(body["items"]) == 5
        similar = c.get("/items/260/similar", params={"k": 3}).json()
        assert {"1196", "1210"} & {i["id"] for i in similar["items"]}
        # Past the model's 256-token window: answered, and reported rather than silently cut.
        long_text = " ".join(["spaceship"] * 300)
        body = c.post("/search", json={"text": long_text, "k": 3}).json()
        (cut,) = body["truncated"]
        assert cut["field"] == "text" and cut["limit"] == 256 and cut["tokens"] > 300
        assert c.post("/search", json={"text": "spaceship", "k": 3}).json()["truncated"] == []
