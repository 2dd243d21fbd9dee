"""The hnswlib graph index (engine/hnswlib_index.py) against its exact twin, and huge pages."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine import Bundle, HashEmbedder, InvalidArgument, Recommender
from engine.ann import EXACT_SCAN_MAX_ROWS, Searcher
from engine.hnswlib_index import HnswlibIndex, factory_links
from engine.hugepages import huge_pages_for_new_mappings
from engine.native_params import own_search_params
from engine.query_cost import scan_floats
from indexer.faiss_build import build_faiss_index
from tests.conftest import clustered, hash_bundles

N, D, K = 24_000, 32, 10


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / t.shape[0] for f, t in zip(found, truth, strict=True)])
    )


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    vectors = clustered(N, D, seed=3)
    rng = np.random.default_rng(4)
    queries = vectors[rng.choice(N, 200, replace=False)] + 0.05 * rng.standard_normal((200, D))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return vectors, queries.astype(np.float32)


@pytest.fixture(scope="module")
def searcher(data: tuple[np.ndarray, np.ndarray]) -> Searcher:
    vectors, _ = data
    index = build_faiss_index(vectors, "hnswlib16")
    assert isinstance(index, HnswlibIndex) and index.ntotal == N and index.links == 16
    return Searcher(index, vectors)


def test_recall_against_the_exact_twin_and_exact_scores(
    searcher: Searcher, data: tuple[np.ndarray, np.ndarray]
) -> None:
    vectors, queries = data
    scores, found = searcher.search(queries, K)
    _, truth = searcher.exact(queries, K)
    assert recall(found, truth) >= 0.95
    # Scores are the inner products of the rows found, best first.
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, vectors[found]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_breadth_per_request_leaves_the_shared_index_alone(
    searcher: Searcher, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """A request's efSearch is its own: hnswlib's one ``ef`` setting is never changed, so
    requests running at once with different breadths each get theirs."""
    _, queries = data
    _, truth = searcher.exact(queries, K)
    narrow = searcher.search(queries, K, params={"efSearch": K})[1]
    wide = searcher.search(queries, K, params={"efSearch": 400})[1]
    assert recall(wide, truth) > recall(narrow, truth)
    assert recall(wide, truth) >= 0.99
    answers: dict[int, np.ndarray] = {}

    def run(ef: int) -> None:
        for _ in range(20):
            answers[ef] = searcher.search(queries, K, params={"efSearch": ef})[1]

    threads = [threading.Thread(target=run, args=(ef,)) for ef in (K, 400)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(answers[K], narrow) and np.array_equal(answers[400], wide)
    assert own_search_params(searcher.index) == {"efSearch": searcher.index.ef_search}


def test_a_filter_is_applied_after_the_graph_and_short_answers_go_exact(
    searcher: Searcher, data: tuple[np.ndarray, np.ndarray]
) -> None:
    _, queries = data
    rng = np.random.default_rng(5)
    allowed = rng.random(N) < 0.9
    assert np.count_nonzero(allowed) > EXACT_SCAN_MAX_ROWS  # the graph answers, not a scan
    _, found = searcher.search(queries, K, allowed)
    _, truth = searcher.exact(queries, K, allowed)
    assert allowed[found].all() and recall(found, truth) >= 0.95
    # A filter needing more neighbours than a graph search should fetch gets no graph answer...
    few = np.zeros(N, dtype=bool)
    few[[3, 500, 9000]] = True
    assert (searcher.index.search(queries[:2], K, allowed=few)[1] == -1).all()
    # ...and on a small graph fewer allowed rows than k come back padded, never a disallowed one.
    small = build_faiss_index(searcher.vectors[:300], "hnswlib8")
    scores, rows = small.search(queries[:5], K, allowed=few[:300] | (np.arange(300) == 7))
    assert set(rows[rows >= 0].tolist()) == {3, 7}
    assert (rows[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    # Through the Searcher a query the graph leaves short is answered exactly.
    many = allowed.copy()
    many[:] = True
    many[rng.choice(N, 100, replace=False)] = False
    _, full = searcher.search(queries[:5], N - 100, many)
    assert (full >= 0).all() and len({*full[0].tolist()}) == N - 100


def test_query_cost_counts_the_graph_breadth(searcher: Searcher) -> None:
    assert scan_floats(searcher, {"efSearch": 100}) == 100 * 2 * 16 * D
    assert scan_floats(searcher, {"efSearch": 200}) == 2 * scan_floats(searcher, {"efSearch": 100})


def test_bundle_round_trip_and_compaction(tmp_path: Path) -> None:
    roots = hash_bundles(tmp_path, 300, {"graph": "hnswlib8", "flat": "Flat"})
    bundle = Bundle.load(roots["graph"])
    assert isinstance(bundle.index, HnswlibIndex) and bundle.index.ntotal == 300
    assert bundle.manifest.index.factory == "hnswlib8"
    assert bundle.index.ef_search == bundle.manifest.index.search_params["efSearch"]
    graph = Recommender(bundle, HashEmbedder(64))
    flat = Recommender(Bundle.load(roots["flat"]), HashEmbedder(64))
    for text in ("space adventure", "romantic comedy in paris", "Toy Story"):
        # The hash embedder's scores tie often: equal scores, ties in any order.
        got = [item.score for item in graph.search(text, k=5).items]
        np.testing.assert_allclose(got, [item.score for item in flat.search(text, k=5).items])
    from engine.bundle import owned_index

    copy = owned_index(bundle)
    copy.reset()
    assert copy.ntotal == 0 and bundle.index.ntotal == 300
    copy.add(np.asarray(bundle.vectors[:50]))
    rows = copy.search(np.asarray(bundle.vectors[:50]), 1)[1]
    assert rows[:, 0].tolist() == list(range(50))


def test_bad_factories_and_a_missing_package_get_one_line(
    monkeypatch: pytest.MonkeyPatch, data: tuple[np.ndarray, np.ndarray]
) -> None:
    assert factory_links("hnswlib") == 32 and factory_links("HNSWLIB24") == 24
    with pytest.raises(InvalidArgument, match="M >= 2"):
        factory_links("hnswlib1")
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # import hnswlib now fails
    with pytest.raises(InvalidArgument) as raised:
        build_faiss_index(data[0][:100], "hnswlib16")
    assert raised.value.field == "factory" and "pip install" in str(raised.value)


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "none"
    return text.split("[")[1].split("]")[0]


def _anon_huge_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(_thp_mode() not in {"madvise", "always"}, reason="no transparent huge pages")
def test_new_large_mappings_get_huge_pages() -> None:
    before = _anon_huge_kib()
    with huge_pages_for_new_mappings() as advised:
        block = np.ones(256 << 20, dtype=np.uint8)  # a fresh 256 MiB mapping, filled
    assert advised and max(advised) >= 200 << 20
    # Collapsed (MADV_COLLAPSE) into huge pages: all of it on a quiet machine (256 MiB here),
    # less where physical memory is too fragmented for 2 MiB pages.
    assert _anon_huge_kib() - before >= (32 << 20) // 1024
    assert int(block[::4096].sum()) == len(block[::4096])
    with huge_pages_for_new_mappings() as untouched:
        small = np.ones(1 << 20, dtype=np.uint8)
    assert untouched == [] and small.sum() == 1 << 20
