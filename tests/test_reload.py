"""Admin key and hot reload, against a real uvicorn process under load from another process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from engine import HashEmbedder
from engine.bundle import resolve_bundle_dir
from engine.versions import current_version
from indexer.build import build
from indexer.sample import SAMPLE_DIR
from tests.conftest import movies_slice, sample_build
from tests.test_http import Server

KEY = "s3cret-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLICE = 200

# Runs in its own process so the load does not share the test's GIL or event loop: it hammers
# /recommend from several threads until the stop file appears, and reports what it saw.
LOAD_SCRIPT = r"""
import json, sys, threading, time, os
import httpx

url, stop = sys.argv[1], sys.argv[2]
lock = threading.Lock()
seen = {"ok": 0, "failed": [], "answers": [], "versions": set()}

def worker(n):
    with httpx.Client(base_url=url, timeout=30.0) as client:
        i = 0
        while not os.path.exists(stop) and i < 5000:
            i += 1
            try:
                if i % 10 == 0:
                    r = client.get("/health")
                    if r.status_code == 200:
                        with lock:
                            seen["versions"].add(r.json()["version"])
                        continue
                else:
                    r = client.post("/recommend", json={"k": 5})
            except httpx.HTTPError as exc:
                with lock:
                    seen["failed"].append(repr(exc))
                continue
            with lock:
                if r.status_code != 200:
                    seen["failed"].append(r.status_code)
                else:
                    seen["ok"] += 1
                    if i % 10 != 0:
                        seen["answers"].append([item["id"] for item in r.json()["items"]])

assert httpx.post(url + "/recommend", json={"k": 5}).status_code == 200
print("ready", flush=True)
threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
seen["versions"] = sorted(seen["versions"])
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Disjoint catalogues, one per version, so every answer shows which version gave it."""
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})["movieId"]
    out = []
    for n in range(5):
        directory = tmp_path_factory.mktemp(f"slice{n}")
        out.append(movies_slice(directory, movies[n * SLICE : (n + 1) * SLICE].tolist()))
    return out


def ids_of(catalog: Path) -> set[str]:
    return set(pd.read_csv(catalog, dtype={"movieId": str})["movieId"])


def build_version(root: Path, catalog: Path) -> str:
    build(sample_build(root.parent, catalog, root.name), embedder=HashEmbedder(64))
    version = current_version(root)
    assert version is not None
    return version


def tamper(root: Path) -> None:
    """Flip one byte of the current version's vectors, after its manifest recorded the sha256."""
    vectors = resolve_bundle_dir(root) / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-5] ^= 0xFF
    vectors.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, slices: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("reload") / "indexes" / "live"
    build_version(root, slices[0])
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[Server]:
    with Server(root, VECREC_API_KEY=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def assert_unauthorised(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "detail": "a valid admin key is required",
        "field": None,
        "type": "HTTPError",
    }


def test_admin_is_disabled_without_a_key(hash_index: Path) -> None:
    with Server(hash_index) as srv:
        for headers in ({}, AUTH):
            response = httpx.post(f"{srv.url}/admin/reload", headers=headers)
            assert response.status_code == 403, response.text
            assert response.json()["detail"] == "admin endpoints are disabled: set VECREC_API_KEY"


def test_admin_needs_the_right_bearer_key(client: httpx.Client) -> None:
    assert_unauthorised(client.post("/admin/reload"))
    assert_unauthorised(client.post("/admin/reload", headers={"Authorization": "Bearer nope"}))
    assert_unauthorised(client.post("/admin/reload", headers={"Authorization": f"Basic {KEY}"}))
    # Refused before the query is even validated: a caller without the key learns nothing.
    assert_unauthorised(client.post("/admin/reload", params={"force": "maybe"}))
    response = client.post("/admin/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reloaded"] is False and body["version"] == body["previous"]
    forced = client.post("/admin/reload", headers=AUTH, params={"force": "true"}).json()
    assert forced["reloaded"] is True and forced["version"] == body["version"]


def test_three_hot_reloads_under_load_fail_no_request(
    server: Server, client: httpx.Client, root: Path, slices: list[Path], tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD_SCRIPT, server.url, str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    versions = [client.get("/health").json()["version"]]
    try:
        assert load.stdout is not None and load.stdout.readline() == "ready\n"
        for catalog in slices[1:4]:
            version = build_version(root, catalog)
            response = client.post("/admin/reload", headers=AUTH)
            assert response.status_code == 200, response.text
            assert response.json() == {
                "reloaded": True,
                "previous": versions[-1],
                "version": version,
                "items": SLICE,
            }
            assert client.get("/health").json()["version"] == version == current_version(root)
            answer = {i["id"] for i in client.post("/recommend", json={"k": 5}).json()["items"]}
            assert answer <= ids_of(catalog)
            versions.append(version)
    finally:
        stop.touch()
        out, err = load.communicate(timeout=60)
    assert load.returncode == 0, err
    seen = json.loads(out)
    assert seen["failed"] == [] and seen["ok"] > 50, seen["failed"]
    catalogues = [ids_of(c) for c in slices[:4]]
    # Every answer came whole from one version; the old and the new both answered under load.
    served = {next(n for n, ids in enumerate(catalogues) if set(a) <= ids) for a in seen["answers"]}
    assert {0, 3} <= served
    assert set(seen["versions"]) <= set(versions)
    health = client.get("/health").json()
    assert health["reload_failures"] == 0 and health["last_reload_error"] is None
    assert health["reloads"] >= 3


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(
    client: httpx.Client, root: Path, slices: list[Path]
) -> None:
    before = client.get("/health").json()
    build_version(root, slices[4])
    tamper(root)
    response = client.post("/admin/reload", headers=AUTH)
    assert response.status_code == 503, response.text
    assert "checksum" in response.json()["detail"]
    answer = client.post("/recommend", json={"k": 5})
    assert answer.status_code == 200
    assert {i["id"] for i in answer.json()["items"]} <= ids_of(slices[3])
    health = client.get("/health").json()
    assert health["version"] == before["version"]
    assert health["reload_failures"] == before["reload_failures"] + 1
    assert "checksum" in health["last_reload_error"]
    assert health["reloads"] == before["reloads"]


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_polling_reloads_new_versions_and_retries_no_bad_one(
    tmp_path: Path, slices: list[Path]
) -> None:
    root = tmp_path / "indexes" / "polled"
    build_version(root, slices[0])
    with (
        Server(root, VECREC_RELOAD_INTERVAL="0.2") as srv,
        httpx.Client(base_url=srv.url, timeout=30.0) as c,
    ):
        version = build_version(root, slices[1])
        wait_for(lambda: c.get("/health").json()["version"] == version)
        build_version(root, slices[2])
        tamper(root)
        wait_for(lambda: c.get("/health").json()["reload_failures"] == 1)
        time.sleep(1.0)  # five more polls: the refused version is not retried
        health = c.get("/health").json()
        assert health["version"] == version and health["reload_failures"] == 1
        assert health["reloads"] == 1 and "checksum" in health["last_reload_error"]
