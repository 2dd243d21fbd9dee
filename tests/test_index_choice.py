"""The index-choice rule (indexer/index_choice.py) and FAISS index building (indexer/faiss_build.py)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from engine.embedder import normalize_rows
from engine.errors import InvalidArgument
from indexer.faiss_build import build_faiss_index, default_search_params
from indexer.index_choice import (
    FLAT_MAX_ITEMS,
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_MAX_ITEMS,
    IVF_MAX_NLIST,
    MIN_POINTS_PER_LIST,
    choose_index,
    ivf_nlist,
    ivf_nprobe,
)

DIM = 384

# -- choose_index --------------------------------------------------------------------------------


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@pytest.mark.parametrize("n", [1, 2, 100, FLAT_MAX_ITEMS - 1, FLAT_MAX_ITEMS])
def test_flat_up_to_flat_max_items(n: int) -> None:
    choice = choose_index(n, DIM)
    assert choice.factory == "Flat"
    assert choice.search_params == {}
    assert str(FLAT_MAX_ITEMS) in choice.reason


@pytest.mark.parametrize(
    "n", [FLAT_MAX_ITEMS + 1, (FLAT_MAX_ITEMS + HNSW_MAX_ITEMS) // 2, HNSW_MAX_ITEMS]
)
def test_hnsw_above_flat_max_items_up_to_hnsw_max_items(n: int) -> None:
    choice = choose_index(n, DIM)
    assert choice.factory.startswith("HNSW")
    assert choice.search_params == {"efSearch": HNSW_EF_SEARCH}
    assert str(HNSW_MAX_ITEMS) in choice.reason


@pytest.mark.parametrize("n", [HNSW_MAX_ITEMS + 1, 10 * HNSW_MAX_ITEMS, 10**10])
def test_ivf_sq8_above_hnsw_max_items(n: int) -> None:
    choice = choose_index(n, DIM)
    nlist = ivf_nlist(n)
    assert choice.factory == f"IVF{nlist},SQ8"
    assert choice.search_params == {"nprobe": ivf_nprobe(nlist)}
    assert str(HNSW_MAX_ITEMS) in choice.reason


@pytest.mark.parametrize(
    "n", [1, FLAT_MAX_ITEMS, FLAT_MAX_ITEMS + 1, HNSW_MAX_ITEMS, HNSW_MAX_ITEMS + 1]
)
def test_chosen_factory_strings_are_accepted_by_faiss(n: int) -> None:
    choice = choose_index(n, 16)
    index = faiss.index_factory(16, choice.factory, faiss.METRIC_INNER_PRODUCT)
    assert index.d == 16


def test_choice_depends_on_size_only() -> None:
    for n in (5, FLAT_MAX_ITEMS + 1, HNSW_MAX_ITEMS + 1):
        assert choose_index(n, 16).factory == choose_index(n, 1024).factory


@pytest.mark.parametrize(("n", "d"), [(0, DIM), (-1, DIM), (10, 0), (10, -5)])
def test_invalid_sizes_raise_value_error(n: int, d: int) -> None:
    with pytest.raises(ValueError):
        choose_index(n, d)


# -- ivf_nlist / ivf_nprobe ----------------------------------------------------------------------

SIZES = sorted(
    {
        1,
        2,
        38,
        39,
        40,
        100,
        624,
        1_000,
        5_000,
        24_336,
        100_000,
        HNSW_MAX_ITEMS,
        HNSW_MAX_ITEMS + 1,
        10**7,
        10**9,
        10**12,
    }
    | set(range(1, 5_000, 37))
)


def test_ivf_nlist_is_a_trainable_power_of_two() -> None:
    for n in SIZES:
        nlist = ivf_nlist(n)
        assert is_power_of_two(nlist), (n, nlist)
        assert nlist <= IVF_MAX_NLIST, (n, nlist)
        if n >= MIN_POINTS_PER_LIST:
            # Enough training points for every list.
            assert nlist <= n // MIN_POINTS_PER_LIST, (n, nlist)


def test_ivf_nlist_grows_with_n() -> None:
    values = [ivf_nlist(n) for n in SIZES]
    assert values == sorted(values)
    assert ivf_nlist(HNSW_MAX_ITEMS + 1) < ivf_nlist(100 * HNSW_MAX_ITEMS)
    assert ivf_nlist(10_000) < ivf_nlist(1_000_000)
    assert ivf_nlist(10**12) == IVF_MAX_NLIST


def test_ivf_nlist_is_about_four_sqrt_n_where_not_capped() -> None:
    for n in (10**6, 4 * 10**6, 10**8):
        nlist = ivf_nlist(n)
        target = 4 * n**0.5
        assert target / 2 <= nlist <= target * 2, (n, nlist)


@pytest.mark.parametrize("nlist", [1, 2, 8, 15, 16, 17, 100, 128, 1024, 4096, IVF_MAX_NLIST])
def test_ivf_nprobe_within_one_and_nlist(nlist: int) -> None:
    nprobe = ivf_nprobe(nlist)
    assert 1 <= nprobe <= nlist


def test_ivf_nprobe_does_not_decrease_with_nlist() -> None:
    values = [ivf_nprobe(2**e) for e in range(17)]
    assert values == sorted(values)
    assert values[-1] < 2**16  # never exhaustive for a large index


# -- build_faiss_index ---------------------------------------------------------------------------


def unit_vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).standard_normal((n, d)))


def inner_index(index: faiss.Index) -> faiss.Index:
    inner = faiss.downcast_index(index)
    while isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    return inner


@pytest.mark.parametrize("factory", ["Nope", "HNSW32,Flat,Flat", "IVFx,SQ8", ""])
def test_invalid_factory_string(factory: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        build_faiss_index(unit_vectors(50), factory)
    assert info.value.field == "factory"
    assert repr(factory) in info.value.message
    assert "\n" not in info.value.message


def test_ivf_with_more_lists_than_vectors() -> None:
    with pytest.raises(InvalidArgument) as info:
        build_faiss_index(unit_vectors(20), "IVF64,Flat")
    assert info.value.field == "factory"
    assert "64" in info.value.message
    assert "20" in info.value.message


def test_flat_records_no_search_params() -> None:
    vectors = unit_vectors(100)
    index = build_faiss_index(vectors, "Flat")
    assert index.ntotal == 100
    assert default_search_params(index) == {}
    _, rows = index.search(vectors[:5], 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("factory", ["HNSW8", "PCA8,HNSW8"])
def test_hnsw_records_and_applies_ef_search(factory: str) -> None:
    vectors = unit_vectors(300)
    index = build_faiss_index(vectors, factory)
    assert index.ntotal == 300
    assert default_search_params(index) == {"efSearch": HNSW_EF_SEARCH}
    hnsw = inner_index(index)
    assert isinstance(hnsw, faiss.IndexHNSW)
    assert hnsw.hnsw.efSearch == HNSW_EF_SEARCH
    if factory == "HNSW8":
        assert hnsw.hnsw.efConstruction == HNSW_EF_CONSTRUCTION
        _, rows = index.search(vectors[:5], 1)
        assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_hnsw_behind_a_pretransform_gets_ef_construction() -> None:
    index = build_faiss_index(unit_vectors(300), "PCA8,HNSW8")
    assert inner_index(index).hnsw.efConstruction == HNSW_EF_CONSTRUCTION


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8", "PCA8,IVF16,Flat"])
def test_ivf_records_and_applies_nprobe(factory: str) -> None:
    n = 16 * MIN_POINTS_PER_LIST + 50
    vectors = unit_vectors(n)
    index = build_faiss_index(vectors, factory)
    assert index.ntotal == n
    params = default_search_params(index)
    assert params == {"nprobe": ivf_nprobe(16)}
    assert faiss.extract_index_ivf(index).nprobe == params["nprobe"]
    assert faiss.extract_index_ivf(index).nlist == 16


def test_build_is_deterministic_for_a_seed() -> None:
    vectors = unit_vectors(16 * MIN_POINTS_PER_LIST + 50)
    queries = unit_vectors(10, seed=1)
    a = build_faiss_index(vectors, "IVF16,Flat", seed=7).search(queries, 5)
    b = build_faiss_index(vectors, "IVF16,Flat", seed=7).search(queries, 5)
    np.testing.assert_array_equal(a[1], b[1])


def test_factory_that_cannot_add_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as info:
        build_faiss_index(unit_vectors(50), "IDMap,Flat")
    assert info.value.field == "factory"


def test_the_chosen_graph_stores_half_precision_and_finds_what_full_precision_finds() -> None:
    """``--factory auto``'s graph keeps float16 vectors; on a clustered catalogue its neighbours
    are full precision's (the exact re-score then restores float32 scores)."""
    from indexer.index_choice import hnsw_factory

    rng = np.random.default_rng(11)
    centres = rng.standard_normal((40, 32))
    vectors = centres[rng.integers(0, 40, 3000)] + 0.3 * rng.standard_normal((3000, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    queries = vectors[rng.choice(3000, 50, replace=False)] + 0.05
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    chosen = build_faiss_index(vectors, hnsw_factory())
    storage = faiss.downcast_index(inner_index(chosen).storage)
    assert isinstance(storage, faiss.IndexScalarQuantizer)
    assert storage.sq.qtype == faiss.ScalarQuantizer.QT_fp16
    assert storage.code_size == 2 * 32  # two bytes a coordinate
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    full = build_faiss_index(vectors, "HNSW32")

    def recall(index: faiss.Index) -> float:
        found = index.search(queries, 10)[1]
        return float(
            np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        )

    assert recall(chosen) >= recall(full) - 0.01
    assert recall(chosen) >= 0.9
