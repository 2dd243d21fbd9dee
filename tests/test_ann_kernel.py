"""Searcher's inner products: FAISS's kernel for a few queries, BLAS for many, same scores."""

from __future__ import annotations

import numpy as np
import pytest

from engine.ann import BLAS_FROM_QUERIES, Searcher, _inner_products


@pytest.mark.parametrize("m", [1, 3, BLAS_FROM_QUERIES - 1, BLAS_FROM_QUERIES, 45])
def test_inner_products_agree_on_both_sides_of_the_blas_threshold(m: int) -> None:
    rng = np.random.default_rng(m)
    base = rng.normal(size=(700, 24)).astype(np.float32)
    queries = rng.normal(size=(m, 24)).astype(np.float32)
    got = _inner_products(queries, base)
    assert got.shape == (m, 700) and got.dtype == np.float32
    np.testing.assert_allclose(got, queries.astype(np.float64) @ base.T, rtol=1e-5, atol=1e-4)


def test_masked_exact_scan_with_one_query_never_returns_a_masked_row() -> None:
    import faiss

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    allowed = rng.random(500) < 0.5
    query = rng.normal(size=(1, 16)).astype(np.float32)
    scores, rows = Searcher(index, vectors).exact(query, 20, allowed)
    assert allowed[rows[0]].all()
    want = np.flatnonzero(allowed)[np.argsort(-(vectors[allowed] @ query[0]), kind="stable")][:20]
    np.testing.assert_array_equal(rows[0], want)
    np.testing.assert_allclose(scores[0], vectors[want] @ query[0], rtol=1e-5, atol=1e-5)
