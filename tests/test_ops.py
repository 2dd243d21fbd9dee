"""Limits, metrics, request ids, JSON logs, privacy, access keys, CORS and graceful shutdown,
against real uvicorn processes."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_http import Server

READ_KEY = "reader-key"
ADMIN_KEY = "admin-key"


@pytest.fixture(scope="module")
def server(hash_index: Path) -> Iterator[Server]:
    limits = {
        "VECREC_MAX_K": "50",
        "VECREC_MAX_FILTERS": "2",
        "VECREC_MAX_BODY_BYTES": "4096",
        "VECREC_MAX_HISTORY": "3",
        "VECREC_MAX_TEXT_CHARS": "100",
        "VECREC_MAX_EXCLUDE": "2",
        "VECREC_MAX_BATCH": "2",
        "VECREC_API_KEY": ADMIN_KEY,
    }
    with Server(hash_index, **limits) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "limit"),
    [
        ("/recommend", {"k": 51}, 422, "k", "50"),
        (
            "/search",
            {"text": "x", "filters": [{"field": "genres", "eq": "A"}] * 3},
            422,
            "filters",
            "2",
        ),
        ("/recommend", {"history": ["1", "2", "3", "4"]}, 422, "history", "3"),
        ("/recommend", {"interests": "y" * 101}, 422, "interests", "100"),
        ("/search", {"text": "z" * 101}, 422, "text", "100"),
        ("/recommend", {"history": ["1"], "exclude": ["2", "3", "4"]}, 422, "exclude", "2"),
        ("/search", {"text": "w" * 5000}, 413, "body", "4096"),
    ],
)
def test_every_client_controlled_size_has_a_limit_named_in_the_error(
    client: httpx.Client, path: str, body: dict[str, object], status: int, field: str, limit: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and limit in error["detail"], error


def test_batch_size_is_limited(client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    response = client.post("/items:batch", json={"delete": ["1", "2", "3"]}, headers=auth)
    assert response.status_code == 422 and "limit is 2" in response.json()["detail"]


def test_a_streamed_body_over_the_limit_is_refused_too(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}'

    response = httpx.post(
        f"{server.url}/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "4096" in response.json()["detail"]


def test_a_slow_request_times_out_with_504(hash_index: Path) -> None:
    # 10 ms: probes answer well within it; MMR over 500 of 600 items takes far longer.
    slow = {"k": 500, "explain": True, "rerank": {"mmr_lambda": 0.5, "pool_factor": 2}}
    with Server(hash_index, VECREC_REQUEST_TIMEOUT="0.01") as srv:
        response = httpx.post(f"{srv.url}/recommend", json=slow, timeout=30)
        fast = httpx.get(f"{srv.url}/health", timeout=30)
    assert response.status_code == 504, response.text
    assert response.json()["type"] == "Timeout" and "0.01 s" in response.json()["detail"]
    assert fast.status_code == 200


def test_metrics_count_requests_by_route_and_show_the_index(client: httpx.Client) -> None:
    for _ in range(3):
        assert (
            client.post("/recommend", json={"interests": "space adventure", "k": 3}).status_code
            == 200
        )
    assert client.get("/items/no-such-item").status_code == 404
    text = client.get("/metrics").text
    assert re.search(
        r'vecrec_requests_total\{method="POST",route="/recommend",status="200"\} [3-9]', text
    )
    assert 'route="/items/{item_id}",status="404"' in text
    assert "no-such-item" not in text
    assert (
        'vecrec_request_duration_seconds_bucket{le="0.005",method="POST",route="/recommend"}'
        in text
    )
    version = client.get("/health").json()["version"]
    assert f'version="{version}"' in text and "vecrec_index_items 600.0" in text
    # One text embedded once, then answered from the cache twice.
    hits = float(re.search(r"^vecrec_query_cache_hits_total (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert hits >= 2
    assert "vecrec_query_embedding_duration_seconds_count" in text
    assert "vecrec_reloads_total 0.0" in text


def test_request_ids_are_echoed_and_logged_as_json(server: Server, client: httpx.Client) -> None:
    given = client.get("/health", headers={"X-Request-ID": "trace-42.a"})
    assert given.headers["x-request-id"] == "trace-42.a"
    made = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    time.sleep(0.5)
    logged = [r for r in json_lines(server.output) if r.get("logger") == "vecrec.access"]
    mine = [r for r in logged if r.get("request_id") == "trace-42.a"]
    assert mine and mine[0]["route"] == "/health" and mine[0]["status"] == 200
    assert isinstance(mine[0]["duration_ms"], float)


def test_health_and_ready_are_distinct(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_histories_and_interests_reach_no_log_and_no_metric(
    server: Server, client: httpx.Client
) -> None:
    marker = "zq7MARKERx19"
    client.post(
        "/recommend",
        json={"history": [{"item_id": f"{marker}-item"}, "1"], "interests": f"films {marker}"},
    )
    client.post("/search", json={"text": f"{marker} search"})
    client.post("/recommend", json={"history": [f"{marker}"] * 9})  # refused: over the limit
    client.post("/recommend", json={"interests": marker * 20})  # refused: too long
    client.get(f"/items/{marker}/similar")
    metrics = client.get("/metrics").text
    time.sleep(0.5)
    assert marker not in server.output
    assert marker not in metrics


@pytest.fixture(scope="module")
def locked(hash_index: Path) -> Iterator[Server]:
    with Server(
        hash_index,
        VECREC_READ_API_KEY=READ_KEY,
        VECREC_API_KEY=ADMIN_KEY,
        VECREC_CORS_ORIGINS='["https://shop.example"]',
    ) as srv:
        yield srv


def test_a_read_key_guards_queries_without_revealing_items(locked: Server) -> None:
    url = locked.url
    refused = [
        httpx.get(f"{url}/items/1"),
        httpx.get(f"{url}/items/no-such-item"),
        httpx.get(f"{url}/items/1/similar", headers={"Authorization": "Bearer wrong"}),
        httpx.post(f"{url}/recommend", json={"k": 3}),
        httpx.get(f"{url}/metrics"),
        httpx.get(f"{url}/index"),
    ]
    for response in refused:
        assert response.status_code == 401, response.text
        assert response.json()["detail"] == "a valid API key is required"
    assert refused[0].json() == refused[1].json()
    for key in (READ_KEY, ADMIN_KEY):
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{url}/items/1", headers=auth).status_code == 200
        assert httpx.get(f"{url}/items/no-such-item", headers=auth).status_code == 404
    # The read key does not open the admin routes.
    read = {"Authorization": f"Bearer {READ_KEY}"}
    assert httpx.post(f"{url}/admin/reload", headers=read).status_code == 401
    assert httpx.get(f"{url}/health").json() == {
        **{k: None for k in ("index", "version", "items", "last_reload_error")},
        **{"status": "ok", "reloads": 0, "reload_failures": 0, "pending_updates": 0},
        **{"compactions": 0, "last_compaction_error": None},
    }
    assert httpx.get(f"{url}/health", headers=read).json()["items"] == 600
    assert httpx.get(f"{url}/ready").status_code == 200


def test_cors_is_closed_unless_an_origin_is_configured(locked: Server, server: Server) -> None:
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    allowed = httpx.options(f"{locked.url}/recommend", headers=preflight)
    assert allowed.headers.get("access-control-allow-origin") == "https://shop.example"
    other = httpx.options(
        f"{locked.url}/recommend", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    closed = httpx.options(f"{server.url}/recommend", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers


def test_sigterm_lets_requests_in_flight_finish(hash_index: Path) -> None:
    srv = Server(hash_index).__enter__()
    answered: dict[str, object] = {}  # request id -> status code, or the client's error
    lock = threading.Lock()
    started = threading.Event()

    def worker(number: int) -> None:
        for sent in range(10_000):
            request_id = f"w{number}-{sent}"
            try:
                # A new connection each time: after SIGTERM only new connections may be refused.
                response = httpx.post(
                    f"{srv.url}/recommend",
                    json={"k": 500, "explain": True},
                    headers={"x-request-id": request_id},
                    timeout=30,
                )
            except httpx.ConnectError:
                return
            except httpx.HTTPError as exc:
                with lock:
                    answered[request_id] = repr(exc)
                return
            with lock:
                answered[request_id] = response.status_code
            started.set()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        assert started.wait(60)
        srv.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=60)
        # Uvicorn shuts down gracefully, then re-raises the signal: the status says SIGTERM.
        assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        srv.stop()
    # Every request the server began, it logged when it ended: each must have reached its client
    # as a 200. A connection the kernel queued but the closing server never read may be reset;
    # that request was not in flight, so the server has no line for it.
    begun = {
        line["request_id"]: line["status"]
        for line in (json.loads(raw) for raw in srv.output.splitlines() if raw.startswith("{"))
        if line.get("message") == "request" and line["route"] == "/recommend"
    }
    assert begun and all(status == 200 for status in begun.values())
    assert all(answered.get(request_id) == 200 for request_id in begun), {
        request_id: answered.get(request_id) for request_id in begun
    }
    unanswered = {r: a for r, a in answered.items() if a != 200}
    assert not unanswered.keys() & begun.keys(), unanswered
    assert "shutting down: requests in flight finished" in srv.output
