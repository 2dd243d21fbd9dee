"""Which queries a server may answer on its event loop: the cost estimate and its rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import faiss
import numpy as np
import pytest

from engine import Recommender, RerankConfig, query_cost
from engine.ann import Searcher
from engine.query_cost import is_light, recommend_is_light, scan_floats
from engine.results import QueryOptions
from tests.conftest import clustered

N, D = 2_000, 32


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(N, D)


def test_a_flat_index_reads_every_row_and_appended_rows_count_too(vectors: np.ndarray) -> None:
    index = faiss.IndexFlatIP(D)
    index.add(vectors[:1500])
    assert scan_floats(Searcher(index, vectors[:1500])) == 1500 * D
    # Rows appended by live updates are scanned exactly on top of the index.
    assert scan_floats(Searcher(index, vectors)) == N * D


def test_hnsw_cost_follows_ef_search_and_the_request_can_raise_it(vectors: np.ndarray) -> None:
    index = faiss.IndexHNSWFlat(D, 16, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    searcher = Searcher(index, vectors, {"efSearch": 40})
    assert scan_floats(searcher) == 40 * 32 * D  # 2·M neighbours at the bottom layer
    assert scan_floats(searcher, {"efSearch": 400}) == 10 * scan_floats(searcher)


def test_ivf_cost_is_the_centroids_and_the_probed_lists(vectors: np.ndarray) -> None:
    quantizer = faiss.IndexFlatIP(D)
    index = faiss.IndexIVFFlat(quantizer, D, 50, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    searcher = Searcher(index, vectors, {"nprobe": 5})
    assert scan_floats(searcher) == 50 * D + 5 * 40 * D
    # More probes than lists is every list.
    assert scan_floats(searcher, {"nprobe": 500}) == 50 * D + 50 * 40 * D


@pytest.fixture(scope="module")
def rec(hash_index: Path) -> Recommender:
    return Recommender.open(hash_index)


def test_the_rules_of_a_recommendation_request(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = scan_floats(rec.searcher)
    mean = QueryOptions(strategy="mean", mode="content")
    # Budget for exactly two searches.
    monkeypatch.setattr(query_cost, "LIGHT_QUERY_FLOATS", 2 * one)
    assert recommend_is_light(rec, mean, k=10, interests=None, history_size=5)
    assert recommend_is_light(rec, mean, k=10, interests="   ", history_size=5)
    # Free text needs the embedding model; a cross-encoder is a model too.
    assert not recommend_is_light(rec, mean, k=10, interests="space opera", history_size=5)
    crossed = dataclasses.replace(mean, rerank=RerankConfig(cross_encoder=True))
    assert not recommend_is_light(rec, crossed, k=10, interests=None, history_size=5)
    # best_score searches once per history item, multi_interest once per interest.
    best = dataclasses.replace(mean, strategy="best_score")
    assert recommend_is_light(rec, best, k=10, interests=None, history_size=2)
    assert not recommend_is_light(rec, best, k=10, interests=None, history_size=3)
    multi = dataclasses.replace(mean, strategy="multi_interest", max_interests=3)
    assert not recommend_is_light(rec, multi, k=10, interests=None, history_size=10)
    assert is_light(rec, mean, k=10, queries=2) and not is_light(rec, mean, k=10, queries=3)


def test_long_answers_re_ranking_and_explanations_add_to_the_cost(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = scan_floats(rec.searcher)
    dim = rec.bundle.dimension
    mean = QueryOptions(strategy="mean", mode="content")
    monkeypatch.setattr(query_cost, "LIGHT_QUERY_FLOATS", one + 10 * 10 * 4 * dim)
    assert is_light(rec, mean, k=10)
    assert not is_light(rec, mean, k=query_cost.LIGHT_MAX_K + 1)
    mmr = dataclasses.replace(mean, rerank=RerankConfig(mmr_lambda=0.5, pool_factor=4))
    assert is_light(rec, mmr, k=10)  # just within: the pool of 40 against the 10 picked
    assert not is_light(rec, mmr, k=11)
    explained = dataclasses.replace(mean, explain=True)
    assert is_light(rec, explained, k=10, history_size=40)
    assert not is_light(rec, explained, k=10, history_size=41)


def test_each_filter_is_a_pass_over_the_catalogue(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = scan_floats(rec.searcher)
    per_filter = rec.searcher.size * query_cost.FILTER_FLOATS_PER_ROW
    mean = QueryOptions(strategy="mean", mode="content")
    monkeypatch.setattr(query_cost, "LIGHT_QUERY_FLOATS", one + 2 * per_filter)
    assert is_light(rec, mean, k=10, filters=2)
    assert not is_light(rec, mean, k=10, filters=3)
    assert not recommend_is_light(rec, mean, k=10, interests=None, history_size=3, filters=3)
