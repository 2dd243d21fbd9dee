"""Build-time autotuning of the FAISS index (the autofaiss idea), for ``--factory auto``.

Every candidate index type for the catalogue's size is built from the real vectors; its search
parameter (``efSearch`` for HNSW, ``nprobe`` for IVF) is swept upwards on held-out queries, and
each setting's recall@k is measured against exact search, with its latency through vecrec's own
search path (:class:`engine.ann.Searcher`, one query at a time, as a server answers). The
fastest setting that reaches the target recall wins; it becomes the manifest's default search
parameters, and what was measured is recorded beside them (``index.autotune``).

Held-out queries are normalised midpoints of random pairs of item vectors
(:func:`engine.evaluation.ann.probe_queries`, seed :data:`TUNE_SEED`): they are not items, and
``vecrec index info`` measures on another seed, so its figure is an independent check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.ann import Searcher
from engine.errors import InvalidArgument
from engine.evaluation.ann import ann_quality, sweep_values
from engine.hnswlib_index import hnswlib_available
from indexer.faiss_build import apply_search_params, build_faiss_index
from indexer.index_choice import (
    FLAT_MAX_ITEMS,
    HNSW_MAX_ITEMS,
    hnsw_factory,
    hnswlib_factory,
    ivf_nlist,
)

# A Flat scan of this many 384-d rows is ~40 MFLOP per query (a few ms on one core): above it
# Flat is only the fallback, never worth measuring.
FLAT_CANDIDATE_MAX_ITEMS = 100_000
TUNE_SEED = 1
DEFAULT_TARGET_RECALL = 0.95

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutotuneConfig:
    """What to reach and how much to measure. ``candidates`` overrides the size rule."""

    target_recall: float = DEFAULT_TARGET_RECALL
    k: int = 10
    queries: int = 200
    seed: int = TUNE_SEED
    candidates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.target_recall <= 1.0:
            raise InvalidArgument(
                f"target recall {self.target_recall} must be in (0, 1]", field="target_recall"
            )
        if self.k < 1 or self.queries < 1:
            raise InvalidArgument("autotune needs k >= 1 and queries >= 1", field="target_recall")


@dataclass(frozen=True)
class Trial:
    """One measured setting."""

    factory: str
    params: dict[str, int]
    recall: float
    ms_per_query: float
    build_seconds: float


@dataclass(frozen=True)
class AutotuneResult:
    """The winning index (built, with its parameters applied) and everything measured."""

    factory: str
    params: dict[str, int]
    recall: float
    ms_per_query: float
    index: Any
    config: AutotuneConfig
    trials: tuple[Trial, ...] = field(default_factory=tuple)

    def record(self) -> dict[str, Any]:
        """The manifest's ``index.autotune`` entry (JSON-ready)."""
        return {
            "target_recall": self.config.target_recall,
            "k": self.config.k,
            "queries": self.config.queries,
            "seed": self.config.seed,
            "recall": round(self.recall, 4),
            "ms_per_query": round(self.ms_per_query, 4),
            "trials": [
                {
                    **asdict(t),
                    "recall": round(t.recall, 4),
                    "ms_per_query": round(t.ms_per_query, 4),
                    "build_seconds": round(t.build_seconds, 2),
                }
                for t in self.trials
            ],
        }


def candidate_factories(n_items: int) -> list[str]:
    """The index types worth measuring for ``n_items`` vectors (Flat is always the fallback).

    Both graph engines are measured when hnswlib is installed: which is faster depends on the
    CPU (bench/RESULTS.md, issue 7)."""
    if n_items <= FLAT_MAX_ITEMS:
        # An exact BLAS scan answers in well under a millisecond: nothing approximate pays.
        return ["Flat"]
    nlist = ivf_nlist(n_items)
    out = ["Flat"] if n_items <= FLAT_CANDIDATE_MAX_ITEMS else []
    if n_items <= HNSW_MAX_ITEMS:
        out.append(hnsw_factory())
        if hnswlib_available():
            out.append(hnswlib_factory())
        out.append(f"IVF{nlist},Flat")
    else:
        out.append(f"IVF{nlist},SQ8")
    return out


def _sweep(
    searcher: Searcher, config: AutotuneConfig, factory: str, build_seconds: float
) -> list[Trial]:
    """Settings in increasing cost until one reaches the target (costlier ones are slower)."""
    trials = []
    for params in sweep_values(searcher):
        q = ann_quality(
            searcher, k=config.k, queries=config.queries, params=params, seed=config.seed
        )
        trials.append(Trial(factory, dict(params), q.recall, q.ms_per_query, build_seconds))
        if q.recall >= config.target_recall:
            break
    return trials


def autotune(
    vectors: np.ndarray, config: AutotuneConfig | None = None, *, gpu: bool = False
) -> AutotuneResult:
    """Measure the candidates on ``float32 (n, d)`` unit ``vectors``; return the fastest setting
    reaching ``config.target_recall`` (exact Flat when none does)."""
    config = config or AutotuneConfig()
    factories: Sequence[str] = config.candidates or candidate_factories(len(vectors))
    trials: list[Trial] = []
    best: tuple[Trial, Any] | None = None
    for factory in factories:
        start = time.perf_counter()
        index = build_faiss_index(vectors, factory, gpu=gpu)
        built = time.perf_counter() - start
        found = _sweep(Searcher(index, vectors), config, factory, built)
        trials.extend(found)
        winner = found[-1] if found and found[-1].recall >= config.target_recall else None
        log.info("autotune %s: %s", factory, [(t.params, round(t.recall, 3)) for t in found])
        if winner and (best is None or winner.ms_per_query < best[0].ms_per_query):
            best = (winner, index)
    if best is None:
        log.warning(
            "autotune: no candidate of %s reached recall@%d %.3f; building exact Flat",
            list(factories),
            config.k,
            config.target_recall,
        )
        start = time.perf_counter()
        index = build_faiss_index(vectors, "Flat", gpu=gpu)
        built = time.perf_counter() - start
        found = _sweep(Searcher(index, vectors), config, "Flat", built)
        trials.extend(found)
        best = (found[-1], index)
    trial, index = best
    apply_search_params(index, trial.params)
    return AutotuneResult(
        trial.factory, trial.params, trial.recall, trial.ms_per_query, index, config, tuple(trials)
    )
