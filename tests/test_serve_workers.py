"""``vecrec serve --workers N``: several uvicorn workers, each mapping the same index file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import ROOT
from tests.test_http import free_port


def test_workers_serve_and_share_the_mapped_index(hash_index: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--index",
            str(hash_index),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env={**os.environ, "VECREC_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the workers did not become ready"
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        for _ in range(6):  # new connections, spread over the workers by the kernel
            response = httpx.post(f"{url}/recommend", json={"k": 3}, timeout=30)
            assert response.status_code == 200 and len(response.json()["items"]) == 3
        workers = mapping(proc.pid)
        while len(workers) < 2 and time.monotonic() < deadline:  # the second may still load
            time.sleep(0.3)
            workers = mapping(proc.pid)
        # Both workers serve from the one file's pages; the supervisor holds no bundle.
        assert len(workers) == 2
        assert not maps_index(psutil.Process(proc.pid))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def maps_index(process: psutil.Process) -> bool:
    try:
        return any(m.path.endswith("index.faiss") for m in process.memory_maps())
    except psutil.NoSuchProcess:
        return False


def mapping(pid: int) -> list[psutil.Process]:
    """The processes under ``pid`` that map a bundle's index file."""
    return [p for p in psutil.Process(pid).children(recursive=True) if maps_index(p)]
