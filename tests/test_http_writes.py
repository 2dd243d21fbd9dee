"""Live item writes over HTTP (PUT, DELETE, batch), against real uvicorn processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from engine import Bundle
from tests.test_http import Server
from tests.test_live import N_ITEMS, NEW_TEXT, make_index
from tests.test_reload import LOAD_SCRIPT

KEY = "writer-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Distinct words: the 64-d hash embedder maps some digits to the same dimension.
WORDS = ("Aardvark", "Bassoon", "Cobalt", "Dulcimer", "Ember", "Fjord", "Gossamer", "Harbinger")
NEW_ITEM = {
    "fields": {"title": "Quantum Lighthouse Keepers (2031)", "genres": ["Sci-Fi", "Mystery"]}
}


def found(client: httpx.Client, text: str, k: int = N_ITEMS + 10) -> list[str]:
    response = client.post("/search", json={"text": text, "k": k})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def serve(root: Path, **env: str) -> Server:
    return Server(root, VECREC_API_KEY=KEY, **env)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW16", "hnswlib16"])
def test_put_and_delete_hold_at_once_and_after_a_restart(tmp_path: Path, factory: str) -> None:
    root = make_index(tmp_path, factory)
    with serve(root) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        doomed = found(client, "Toy Story (1995). Genres: Adventure, Animation.", k=3)
        put = client.put("/items/new-1", json=NEW_ITEM, headers=AUTH)
        assert put.status_code == 200, put.text
        body = put.json()
        assert body["created"] == ["new-1"] and body["seq"] == 1 and body["items"] == N_ITEMS + 1
        for item_id in doomed:
            response = client.delete(f"/items/{item_id}", headers=AUTH)
            assert response.status_code == 200 and response.json()["deleted"] == [item_id]
        assert found(client, NEW_TEXT, k=1) == ["new-1"]
        everything = found(client, "Toy Story (1995). Genres: Adventure, Animation.")
        assert not set(doomed) & set(everything) and len(everything) == N_ITEMS + 1 - 3
        assert client.get(f"/items/{doomed[0]}").status_code == 404
        health = client.get("/health").json()
        assert health["items"] == N_ITEMS - 2 and health["pending_updates"] == 4
    with serve(root) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert found(client, NEW_TEXT, k=1) == ["new-1"]
        assert not set(doomed) & set(found(client, "Toy Story (1995)."))
        assert client.get("/items/new-1").json()["metadata"]["genres"] == ["Sci-Fi", "Mystery"]


def test_an_acknowledged_write_survives_a_killed_server(tmp_path: Path) -> None:
    root = make_index(tmp_path, "HNSW16")
    server = serve(root).__enter__()
    try:
        batch = {"upsert": [{"id": "acked", **NEW_ITEM}], "delete": ["1", "no-such-item"]}
        response = httpx.post(f"{server.url}/items:batch", json=batch, headers=AUTH, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["missing"] == ["no-such-item"]
        os.kill(server.proc.pid, signal.SIGKILL)  # no shutdown, no flush: only the log holds it
        server.proc.wait(timeout=20)
    finally:
        server.stop()
    bundle = Bundle.load(root)
    assert "acked" in bundle.row_of and "1" not in bundle.row_of
    with serve(root) as again, httpx.Client(base_url=again.url, timeout=60) as client:
        assert found(client, NEW_TEXT, k=1) == ["acked"]


def test_writes_need_the_admin_key_and_bad_writes_name_the_field(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    with Server(root) as closed:
        response = httpx.put(f"{closed.url}/items/x", json=NEW_ITEM, headers=AUTH)
        assert response.status_code == 403
    with serve(root) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            assert client.put("/items/x", json=NEW_ITEM, headers=headers).status_code == 401
            assert client.delete("/items/1", headers=headers).status_code == 401
            assert client.post("/items:batch", json={}, headers=headers).status_code == 401
        cases = [
            ("put", "/items/x", {"fields": {"colour": "red"}}, "fields.colour"),
            ("put", "/items/x", {"fields": {"popularity": "many"}}, "fields.popularity"),
            ("put", "/items/x", {"fields": {}}, "fields"),
            ("put", "/items/x", {"fields": {"title": "T"}, "extra": 1}, "extra"),
            ("post", "/items:batch", {"upsert": [{"fields": {"title": "T"}}]}, "upsert[0].id"),
            ("post", "/items:batch", {"delete": ["1", "1"]}, "delete"),
            ("post", "/items:batch", {}, "items"),
            ("post", "/items:batch", {"delete": [str(i) for i in range(1001)]}, "upsert"),
        ]
        for method, path, body, field in cases:
            response = client.request(method, path, json=body, headers=AUTH)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["field"] == field, (body, response.json())
        missing = client.delete("/items/no-such-item", headers=AUTH)
        assert missing.status_code == 404 and missing.json()["type"] == "UnknownItem"
        assert client.get("/health").json()["pending_updates"] == 0
    assert not (root / "updates").exists()  # nothing refused reached the log


def test_background_compaction_swaps_in_a_new_version_and_loses_no_write(tmp_path: Path) -> None:
    root = make_index(tmp_path, "HNSW16")
    env = {"VECREC_COMPACT_MIN_CHANGES": "5", "VECREC_COMPACT_FRACTION": "0.001"}
    with serve(root, **env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        first = client.get("/health").json()["version"]
        for n in range(8):
            item = {"fields": {"title": f"Live Item {WORDS[n]} (2030)"}}
            assert client.put(f"/items/live-{n}", json=item, headers=AUTH).status_code == 200
        assert client.delete("/items/1", headers=AUTH).status_code == 200
        wait_for(lambda: client.get("/health").json()["compactions"] >= 1)
        health = client.get("/health").json()
        assert health["version"] != first and health["last_compaction_error"] is None
        assert health["items"] == N_ITEMS + 8 - 1
        for n in range(8):
            text = client.get(f"/items/live-{n}").json()["text"]
            assert found(client, text, k=1) == [f"live-{n}"]
        assert "1" not in found(client, "Toy Story (1995).")
    bundle = Bundle.load(root)
    assert bundle.live_count == N_ITEMS + 7 and bundle.manifest.source["compacted_from"] == first


def test_updates_from_the_command_line_reach_a_running_server_on_reload(tmp_path: Path) -> None:
    root = make_index(tmp_path, "Flat")
    upserts = tmp_path / "new.jsonl"
    upserts.write_text(
        json.dumps(
            {
                "movieId": "cli-1",
                "title": "Quantum Lighthouse Keepers (2031)",
                "genres": "Sci-Fi|Mystery",
            }
        )
        + "\n"
    )
    with (
        serve(root, VECREC_RELOAD_INTERVAL="0.3") as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "api.cli",
                "--indexes-dir",
                str(root.parent),
                "index",
                "update",
                root.name,
                "--upsert",
                str(upserts),
                "--model",
                "hash:64",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: found(client, NEW_TEXT, k=1) == ["cli-1"])
        assert client.get("/items/cli-1").json()["metadata"]["genres"] == ["Sci-Fi", "Mystery"]


def test_writes_under_read_load_fail_no_request(tmp_path: Path) -> None:
    root = make_index(tmp_path, "HNSW16")
    stop = tmp_path / "stop"
    with serve(root) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD_SCRIPT, server.url, str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert load.stdout is not None and load.stdout.readline() == "ready\n"
            for n in range(20):
                item = {"fields": {"title": f"Under Load {n} (2030)"}}
                assert client.put(f"/items/load-{n}", json=item, headers=AUTH).status_code == 200
                assert client.delete(f"/items/{n + 1}", headers=AUTH).status_code == 200
        finally:
            stop.touch()
            out, err = load.communicate(timeout=60)
        assert load.returncode == 0, err
        seen = json.loads(out)
        assert seen["failed"] == [] and seen["ok"] > 50
        text = client.get("/items/load-19").json()["text"]
        # The last write is searchable: at the top score (the 64-d hash embedder gives some of
        # these titles the same vector, so it may share that score).
        items = client.post("/search", json={"text": text, "k": 5}).json()["items"]
        top = [item["id"] for item in items if item["score"] >= items[0]["score"] - 1e-6]
        assert "load-19" in top


def test_a_write_while_another_writer_holds_the_index_is_refused_with_409(tmp_path: Path) -> None:
    from engine.writer_lock import writer_lock

    root = make_index(tmp_path, "Flat")
    with serve(root) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        with writer_lock(root):  # e.g. a build running from a script
            response = client.put("/items/x", json=NEW_ITEM, headers=AUTH)
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "IndexLocked" and "locked" in response.json()["detail"]
        assert client.get("/items/x").status_code == 404
        assert client.put("/items/x", json=NEW_ITEM, headers=AUTH).status_code == 200
