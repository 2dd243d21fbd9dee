"""Build-time autotuning: the chosen setting reaches the target recall against exact search, is
the fastest measured that does, is stored in the manifest and can be overridden per query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine import Recommender, RecommenderConfig
from engine.ann import Searcher
from engine.errors import InvalidArgument
from engine.evaluation.ann import ann_quality
from indexer.autotune import AutotuneConfig, autotune, candidate_factories
from indexer.index_choice import FLAT_MAX_ITEMS, HNSW_MAX_ITEMS
from tests.conftest import clustered
from tests.test_cli import build_args, catalogue_rows, ok, vecrec, write_catalogue


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(4000, 32, seed=3, centers=40)


@pytest.fixture(scope="module")
def tuned(vectors: np.ndarray) -> object:
    return autotune(
        vectors,
        AutotuneConfig(
            target_recall=0.95, candidates=("Flat", "HNSW16", "hnswlib16", "IVF64,Flat")
        ),
    )


def test_chosen_setting_reaches_the_target_on_other_queries(
    tuned: object, vectors: np.ndarray
) -> None:
    from indexer.autotune import AutotuneResult

    assert isinstance(tuned, AutotuneResult)
    assert tuned.recall >= 0.95
    # Queries of another seed, through a Searcher built as a loaded bundle's would be.
    check = ann_quality(Searcher(tuned.index, vectors, tuned.params), k=10, seed=7)
    assert check.recall >= 0.9, check
    assert {t.factory for t in tuned.trials} == {"Flat", "HNSW16", "hnswlib16", "IVF64,Flat"}


def test_an_hnswlib_winner_carries_its_tuned_breadth(vectors: np.ndarray) -> None:
    from engine.hnswlib_index import HnswlibIndex

    result = autotune(vectors, AutotuneConfig(target_recall=0.95, candidates=("hnswlib16",)))
    assert result.factory == "hnswlib16" and isinstance(result.index, HnswlibIndex)
    assert result.recall >= 0.95
    assert result.index.ef_search == result.params["efSearch"]


def test_chosen_setting_is_the_fastest_that_reaches_the_target(tuned: object) -> None:
    from indexer.autotune import AutotuneResult

    assert isinstance(tuned, AutotuneResult)
    reaching = [t for t in tuned.trials if t.recall >= 0.95]
    assert tuned.ms_per_query == min(t.ms_per_query for t in reaching)
    # Each sweep stops at its first setting reaching the target: costlier ones are slower.
    for factory in {t.factory for t in tuned.trials}:
        sweep = [t for t in tuned.trials if t.factory == factory]
        assert all(t.recall < 0.95 for t in sweep[:-1])


def test_a_higher_target_never_picks_a_cheaper_setting(vectors: np.ndarray) -> None:
    low = autotune(vectors, AutotuneConfig(target_recall=0.6, candidates=("HNSW8",)))
    high = autotune(vectors, AutotuneConfig(target_recall=0.99, candidates=("HNSW8",)))
    assert low.params["efSearch"] < high.params["efSearch"]
    assert high.recall >= 0.99 > 0.6 <= low.recall
    # A query may override the stored setting: the cheap index searched with the dear setting.
    searcher = Searcher(low.index, vectors, low.params)
    overridden = ann_quality(searcher, params={"efSearch": high.params["efSearch"]}, seed=1)
    default = ann_quality(searcher, seed=1)
    assert overridden.recall >= 0.98 and overridden.recall > default.recall


def test_unreachable_target_falls_back_to_exact(vectors: np.ndarray) -> None:
    # 4-bit codes lose ties and near-ties: all lists probed still miss some neighbours.
    result = autotune(vectors, AutotuneConfig(target_recall=1.0, candidates=("IVF16,SQ4",)))
    assert result.factory == "Flat" and result.recall == 1.0
    assert any(t.factory == "IVF16,SQ4" and t.recall < 1.0 for t in result.trials)


def test_candidates_by_size() -> None:
    assert candidate_factories(FLAT_MAX_ITEMS) == ["Flat"]
    mid = candidate_factories(50_000)
    assert mid[0] == "Flat" and "HNSW32,SQfp16" in mid and any(f.startswith("IVF") for f in mid)
    assert "hnswlib32" in mid  # hnswlib is installed with the dev extra
    assert "Flat" not in candidate_factories(500_000)
    big = candidate_factories(HNSW_MAX_ITEMS + 1)
    assert len(big) == 1 and big[0].endswith(",SQ8")


@pytest.mark.parametrize("target", [0.0, 1.5])
def test_bad_target_is_refused(target: float) -> None:
    with pytest.raises(InvalidArgument, match="target recall"):
        AutotuneConfig(target_recall=target)


def test_build_stores_the_tuned_setting(hash_index: Path) -> None:
    recommender = Recommender.open(hash_index)
    manifest = recommender.bundle.manifest
    tuned = manifest.index.autotune
    assert tuned is not None and manifest.index.chosen_by == "auto"
    assert tuned["target_recall"] == 0.95 and tuned["recall"] >= 0.95
    winner = [t for t in tuned["trials"] if t["factory"] == manifest.index.factory]
    assert winner[-1]["params"] == manifest.index.search_params
    assert recommender.searcher.default_params == manifest.index.search_params
    override = RecommenderConfig(search_params={"efSearch": 99})
    assert Recommender.open(hash_index, config=override).searcher.default_params == {"efSearch": 99}


@pytest.fixture(scope="module")
def indexes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``good``: the CLI tests' 60-item catalogue, built by the CLI with --factory auto."""
    work = tmp_path_factory.mktemp("autotune-cli")
    catalogue = write_catalogue(work / "movies.csv", catalogue_rows())
    ok(vecrec(work / "indexes", *build_args(catalogue, None, "--target-recall", "0.9")))
    return work / "indexes"


def test_cli_prints_the_autotuned_setting(indexes_dir: Path) -> None:
    out = ok(vecrec(indexes_dir, "index", "info", "good", "--no-recall"))
    line = next(x for x in out.splitlines() if x.startswith("autotune"))
    assert "recall@10" in line and "target 0.9" in line and "Flat" in line
    info = json.loads(ok(vecrec(indexes_dir, "index", "info", "good", "--json", "--no-recall")))
    assert info["index"]["autotune"]["k"] == 10


def test_cli_refuses_a_bad_target_and_bad_search_params(indexes_dir: Path) -> None:
    bad = vecrec(indexes_dir, "index", "build", "x.csv", "--name", "n", "--target-recall", "2")
    assert bad.returncode == 2 and "must be in (0, 1]" in bad.stderr
    query = vecrec(indexes_dir, "similar", "--index", "good", "--search-param", "ef=3", "1")
    assert query.returncode == 1 and "--search-param 'ef=3'" in query.stderr
    assert "Traceback" not in query.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("index", "build", "movies.csv", "--name", "g", "--model", "hash:64", "--gpu"),
        ("search", "--index", "good", "--gpu", "anything"),
        ("serve", "--index", "good", "--gpu", "--port", "0"),
    ],
    ids=["build", "search", "serve"],
)
def test_gpu_flag_fails_with_one_line_without_a_gpu(indexes_dir: Path, args: tuple[str]) -> None:
    from engine.gpu import gpu_problem

    if gpu_problem() is None:
        pytest.skip("this machine has a usable GPU")
    result = vecrec(indexes_dir, *args)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("vecrec: error: --gpu needs a CUDA GPU: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_searches_with_the_index_own_parameters_skip_the_parameter_object(
    tuned: object, vectors: np.ndarray
) -> None:
    from engine.ann import search_parameters
    from engine.native_params import carries, own_search_params
    from indexer.autotune import AutotuneResult

    assert isinstance(tuned, AutotuneResult)
    own = own_search_params(tuned.index)
    assert own == tuned.params  # the build applied the tuned setting to the index itself
    assert carries(own, tuned.params, 10)
    assert not carries({"efSearch": 16}, {}, 32)  # HNSW returns at most efSearch hits
    assert not carries({"nprobe": 4}, {"nprobe": 8}, 10)
    queries = vectors[:50] + 0.05
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    fast = Searcher(tuned.index, vectors, tuned.params).search(queries, 10)[1]
    params, _ = search_parameters(tuned.index, None, tuned.params, 10)
    assert np.array_equal(fast, tuned.index.search(queries, 10, params=params)[1])
