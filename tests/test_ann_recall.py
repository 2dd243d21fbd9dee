"""Approximate bundles against their exact twin, on real MiniLM vectors of the same movies."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engine import Bundle, HistoryEvent, Recommender, RecommenderConfig
from indexer.build import build
from indexer.index_choice import ivf_nlist
from tests.conftest import REAL_SLICE, MemoEmbedder, sample_build

pytestmark = pytest.mark.slow

TARGET_RECALL = 0.95
K = 10


def recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    return float(
        np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True)])
    )


@pytest.fixture(scope="module")
def twins(
    tmp_path_factory: pytest.TempPathFactory,
    real_catalog: Path,
    minilm: MemoEmbedder,
    real_index: Path,
) -> dict[str, Recommender]:
    """Flat (the session's real index), HNSW (FAISS with float32 and float16 vectors; hnswlib)
    and IVF bundles of the same items and vectors."""
    indexes = tmp_path_factory.mktemp("twins")
    out = {"Flat": Recommender.open(real_index, embedder=minilm)}
    # HNSW32,SQfp16: the graph ``--factory auto`` builds (half-precision vectors).
    # hnswlib32: the hnswlib graph the autotuner measures beside FAISS's.
    for factory in ("HNSW32", "HNSW32,SQfp16", "hnswlib32", f"IVF{ivf_nlist(REAL_SLICE)},Flat"):
        config = dataclasses.replace(
            sample_build(indexes, real_catalog, factory.replace(",", "-").lower()),
            factory=factory,
        )
        report = build(config, embedder=minilm)
        # Probe half the lists: the default probes all 16 of them, which is exact.
        params = {"nprobe": 8} if factory.startswith("IVF") else {}
        out[factory] = Recommender.open(
            report.path, embedder=minilm, config=RecommenderConfig(search_params=params)
        )
    return out


def test_twins_hold_identical_vectors(twins: dict[str, Recommender]) -> None:
    ivf = next(r for name, r in twins.items() if name.startswith("IVF"))
    assert ivf.searcher.default_params["nprobe"] < int(ivf.bundle.index.nlist)
    flat = twins["Flat"].bundle
    assert flat.manifest.index.factory == "Flat"
    for rec in twins.values():
        assert rec.bundle.ids.tolist() == flat.ids.tolist()
        assert np.array_equal(np.asarray(rec.bundle.vectors), np.asarray(flat.vectors))


@pytest.mark.parametrize("factory", ["HNSW32", "HNSW32,SQfp16", "hnswlib32", "IVF"])
def test_recall_at_10_of_user_queries(twins: dict[str, Recommender], factory: str) -> None:
    approx = next(r for name, r in twins.items() if name.startswith(factory))
    exact = twins["Flat"]
    rng = np.random.default_rng(7)
    ids = exact.bundle.ids.tolist()
    users = [
        [HistoryEvent(str(i), float(rng.integers(1, 6))) for i in rng.choice(ids, 5, replace=False)]
        for _ in range(150)
    ]
    got = [approx.recommend(u, k=K).ids for u in users]
    want = [exact.recommend(u, k=K).ids for u in users]
    assert all(len(g) == K for g in got)
    measured = recall(got, want)
    assert measured >= TARGET_RECALL, f"{factory} recall@10 {measured:.3f}"


@pytest.mark.parametrize("factory", ["HNSW32", "HNSW32,SQfp16", "hnswlib32", "IVF"])
def test_recall_at_10_of_item_queries(twins: dict[str, Recommender], factory: str) -> None:
    approx = next(r for name, r in twins.items() if name.startswith(factory))
    bundle: Bundle = approx.bundle
    queries = np.asarray(bundle.vectors[::5])
    _, approx_rows = approx.searcher.search(queries, K)
    _, exact_rows = approx.searcher.exact(queries, K)
    measured = recall(approx_rows.tolist(), exact_rows.tolist())
    assert measured >= TARGET_RECALL, f"{factory} recall@10 {measured:.3f}"


def test_half_precision_graph_answers_with_float32_scores(twins: dict[str, Recommender]) -> None:
    """The graph stores float16 vectors; the exact stage re-scores every answer with the bundle's
    float32 vectors, so an item's score is the Flat twin's."""
    half, exact = twins["HNSW32,SQfp16"], twins["Flat"]
    rng = np.random.default_rng(8)
    ids = exact.bundle.ids.tolist()
    compared = 0
    for _ in range(40):
        user = [HistoryEvent(str(i), 5.0) for i in rng.choice(ids, 4, replace=False)]
        want = {item.id: item.score for item in exact.recommend(user, k=K).items}
        for item in half.recommend(user, k=K).items:
            if item.id in want:
                assert abs(item.score - want[item.id]) <= 1e-6, item.id
                compared += 1
    assert compared >= 40 * K * 0.9  # nearly every answer is shared (recall above 0.9)
