"""Query-time GPU routing (engine/gpu.py, engine/ann.py), with a stand-in for the GPU index.

This machine's FAISS has no GPU support, so the GPU copy of the index is a test double that
records each call and answers with the CPU index. It is injected where the real copy is made
(``engine.gpu.to_gpu``), so the tests cover the routing and its wiring (which searches go to the
GPU, which fall back to the CPU, what is logged), not FAISS's GPU kernels.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import HashEmbedder, InvalidArgument, QueryOptions, Recommender, RecommenderConfig
from engine import gpu as gpu_module
from engine.ann import Searcher
from engine.gpu import GPU_MAX_K, GpuTwin, gpu_problem
from tests.conftest import hash_bundles

ITEMS = 3000
CUDA = RecommenderConfig(device="cuda", max_k=3000)


class RecordingGpuIndex:
    """Stands in for a FAISS GPU index: records ``(queries, k, params given)``, answers with
    the CPU index, and counts how many searches run at once."""

    def __init__(self, cpu_index: Any, *, fail: bool = False) -> None:
        self.cpu_index = cpu_index
        self.calls: list[tuple[int, int, bool]] = []
        self.fail = fail
        self.running = 0
        self.most_running = 0
        self._count = threading.Lock()

    def search(self, queries: np.ndarray, k: int, params: Any = None) -> Any:
        with self._count:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.calls.append((len(queries), k, params is not None))
            if self.fail:
                raise RuntimeError("Error in GpuIndex: something the GPU cannot do\nmore")
            time.sleep(0.002)  # long enough for concurrent callers to overlap if unserialised
            if params is None:
                return self.cpu_index.search(queries, k)
            return self.cpu_index.search(queries, k, params=params)
        finally:
            with self._count:
                self.running -= 1


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hash_bundles(
        tmp_path_factory.mktemp("gpu-routing"), ITEMS, {"ivf": "IVF32,Flat", "hnsw": "HNSW16"}
    )


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> list[RecordingGpuIndex]:
    """Makes ``--gpu`` work here: every GPU copy made is a :class:`RecordingGpuIndex`."""
    made: list[RecordingGpuIndex] = []

    def to_gpu(index: Any) -> RecordingGpuIndex:
        made.append(RecordingGpuIndex(index))
        return made[-1]

    monkeypatch.setattr(gpu_module, "require_gpu", lambda: None)
    monkeypatch.setattr(gpu_module, "to_gpu", to_gpu)
    return made


def open_rec(path: Path, config: RecommenderConfig = CUDA) -> Recommender:
    return Recommender.open(path, embedder=HashEmbedder(64), config=config)


CONTENT = QueryOptions(mode="content")
TEXTS = ["space adventure", "romantic comedy", "Heat (1995)", "animated talking toys"]


def test_without_a_gpu_the_request_fails_with_one_line(bundles: dict[str, Path]) -> None:
    assert gpu_problem() is not None, "this test documents a machine without GPU FAISS"
    with pytest.raises(InvalidArgument) as raised:
        open_rec(bundles["ivf"])
    assert raised.value.field == "gpu" and "\n" not in str(raised.value)


def test_ivf_queries_run_on_the_gpu_copy_with_the_cpu_answers(
    bundles: dict[str, Path], fake_gpu: list[RecordingGpuIndex]
) -> None:
    on_gpu = open_rec(bundles["ivf"])
    on_cpu = open_rec(bundles["ivf"], RecommenderConfig())
    assert len(fake_gpu) == 1 and on_cpu.searcher.gpu is None
    for text in TEXTS:
        assert (
            on_gpu.search(text, 10, options=CONTENT).ids
            == on_cpu.search(text, 10, options=CONTENT).ids
        )
    assert [k for _, k, _ in fake_gpu[0].calls] == [10] * len(TEXTS)
    # The index's own nprobe needs no parameters object; a request's own does.
    assert not any(given for _, _, given in fake_gpu[0].calls)
    options = dataclasses.replace(CONTENT, search_params={"nprobe": 2})
    on_gpu.search(TEXTS[0], 10, options=options)
    assert fake_gpu[0].calls[-1] == (1, 10, True)
    assert on_gpu.searcher.gpu is not None and not on_gpu.searcher.gpu.fallbacks


def test_k_above_the_gpu_limit_falls_back_to_the_cpu_logged_once(
    bundles: dict[str, Path], fake_gpu: list[RecordingGpuIndex], caplog: pytest.LogCaptureFixture
) -> None:
    rec = open_rec(bundles["ivf"])
    twin = rec.searcher.gpu
    assert twin is not None
    queries = np.asarray(rec.bundle.vectors[:3], dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="engine.gpu"):
        for _ in range(3):
            _, rows = rec.searcher.search(queries, GPU_MAX_K + 1)
            assert (rows >= 0).sum(axis=1).tolist() == [GPU_MAX_K + 1] * 3
        rec.searcher.search(queries, GPU_MAX_K)
    assert [k for _, k, _ in fake_gpu[0].calls] == [GPU_MAX_K]
    assert twin.fallbacks == {f"k above {GPU_MAX_K}": 3}
    lines = [r.getMessage() for r in caplog.records if "GPU" in r.getMessage()]
    assert len(lines) == 1 and f"k above {GPU_MAX_K}" in lines[0], lines
    # Through the facade too: a large k is answered in full, from the CPU index.
    assert len(rec.search(TEXTS[0], 2500, options=CONTENT).ids) == 2500
    assert twin.fallbacks[f"k above {GPU_MAX_K}"] == 4


def test_filtered_searches_fall_back_to_the_cpu_selector(
    bundles: dict[str, Path], fake_gpu: list[RecordingGpuIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = open_rec(bundles["ivf"])
    cpu = open_rec(bundles["ivf"], RecommenderConfig())
    # Small catalogues answer filtered searches by an exact scan; make this one use the index.
    monkeypatch.setattr("engine.ann.EXACT_SCAN_MAX_ROWS", 0)
    allowed = np.zeros(ITEMS, dtype=bool)
    allowed[::3] = True
    queries = np.asarray(rec.bundle.vectors[:5], dtype=np.float32)
    _, rows = rec.searcher.search(queries, 10, allowed)
    assert allowed[rows[rows >= 0]].all()
    assert np.array_equal(rows, cpu.searcher.search(queries, 10, allowed)[1])
    assert fake_gpu[0].calls == []
    assert rec.searcher.gpu is not None
    assert list(rec.searcher.gpu.fallbacks) == [
        "filter, exclusion or deleted rows (an ID selector)"
    ]


def test_a_gpu_error_falls_back_to_the_cpu(
    bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rec = open_rec(bundles["ivf"], RecommenderConfig())
    failing = RecordingGpuIndex(rec.bundle.index, fail=True)
    searcher = Searcher(
        rec.bundle.index, rec.bundle.vectors, rec.searcher.default_params, gpu=GpuTwin(failing)
    )
    queries = np.asarray(rec.bundle.vectors[:4], dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="engine.gpu"):
        got = searcher.search(queries, 10)
        searcher.search(queries, 10)
    assert np.array_equal(got[1], rec.searcher.search(queries, 10)[1])
    assert len(failing.calls) == 2
    assert searcher.gpu is not None
    assert searcher.gpu.fallbacks == {
        "GPU search failed: Error in GpuIndex: something the GPU cannot do": 2
    }
    assert len([r for r in caplog.records if "GPU" in r.getMessage()]) == 1


def test_concurrent_gpu_searches_are_serialised(
    bundles: dict[str, Path], fake_gpu: list[RecordingGpuIndex]
) -> None:
    rec = open_rec(bundles["ivf"])
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: rec.search(TEXTS[i % 4], 10, options=CONTENT), range(60)))
    assert len(fake_gpu[0].calls) == 60
    assert fake_gpu[0].most_running == 1


def test_hnsw_and_flat_stay_on_the_cpu(
    bundles: dict[str, Path], hash_index: Path, fake_gpu: list[RecordingGpuIndex]
) -> None:
    for path in (bundles["hnsw"], hash_index):
        rec = open_rec(path)
        assert rec.searcher.gpu is None
        assert len(rec.search(TEXTS[0], 10).ids) == 10
    assert fake_gpu == []


def test_snapshots_of_one_version_share_the_gpu_copy(
    bundles: dict[str, Path], fake_gpu: list[RecordingGpuIndex]
) -> None:
    rec = open_rec(bundles["ivf"])
    again = rec.with_bundle(rec.bundle)
    assert again.searcher.gpu is rec.searcher.gpu and len(fake_gpu) == 1
    view = rec.searcher.with_params({"nprobe": 4})
    assert view.gpu is rec.searcher.gpu


def test_refusal_rules() -> None:
    assert GpuTwin.refusal(GPU_MAX_K, False, {"nprobe": GPU_MAX_K}) is None
    assert GpuTwin.refusal(GPU_MAX_K + 1, False, {}) == f"k above {GPU_MAX_K}"
    assert GpuTwin.refusal(10, True, {}) is not None
    assert GpuTwin.refusal(10, False, {"nprobe": GPU_MAX_K + 1}) == f"nprobe above {GPU_MAX_K}"
