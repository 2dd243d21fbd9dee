"""Run methods over one split and score them with the same metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.errors import InvalidArgument
from engine.evaluation.baselines import Method
from engine.evaluation.metrics import ranking_metrics
from engine.evaluation.splits import SplitConfig, split_interactions, validation_split


@dataclass(frozen=True)
class EvalConfig:
    """``threshold``: held-out interactions with weight >= it are hits (all when None)."""

    ks: tuple[int, ...] = (10, 20, 100)
    threshold: float | None = 4.0
    split: SplitConfig = field(default_factory=SplitConfig)
    validation: bool = False

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise InvalidArgument("ks must be positive integers", field="ks")


@dataclass(frozen=True)
class MethodResult:
    name: str
    metrics: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class EvalReport:
    results: tuple[MethodResult, ...]
    users: int
    train_interactions: int
    test_interactions: int
    dropped_interactions: int
    split: str
    ks: tuple[int, ...]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({r.name: r.metrics for r in self.results}).T


def evaluate_recommenders(
    interactions: pd.DataFrame,
    methods: Sequence[Method],
    config: EvalConfig,
    *,
    catalogue: Sequence[str],
    vectors: np.ndarray | None = None,
    row_of: dict[str, int] | None = None,
) -> EvalReport:
    """Split ``interactions`` (user, item, weight, timestamp), fit and score every method.

    Interactions with items outside ``catalogue`` are dropped first (and counted).
    """
    known = set(catalogue)
    inside = interactions[interactions["item"].isin(known)]
    dropped = len(interactions) - len(inside)
    splitter = validation_split if config.validation else split_interactions
    split = splitter(inside, config.split)
    test = split.test
    if config.threshold is not None:
        test = test[test["weight"] >= config.threshold]
    relevant: dict[str, set[str]] = {
        str(u): {str(i) for i in g["item"]} for u, g in test.groupby("user")
    }
    histories = {str(u): g for u, g in split.train.groupby("user") if str(u) in relevant}
    if not relevant:
        raise InvalidArgument(
            "no user has a held-out interaction at or above the relevance threshold",
            field="threshold",
        )
    counts = split.train.drop_duplicates(["user", "item"]).groupby("item").size()
    train_users_of = {str(item): int(n) for item, n in counts.items()}
    n_train_users = split.train["user"].nunique()
    k_max = max(config.ks)
    results = []
    for method in methods:
        start = time.perf_counter()
        method.fit(split.train)
        lists: dict[str, list[str]] = {
            user: method.recommend(histories[user], k_max) for user in relevant
        }
        seconds = time.perf_counter() - start
        metrics = ranking_metrics(
            lists,
            relevant,
            config.ks,
            catalogue=catalogue,
            vectors=vectors,
            row_of=row_of,
            train_users_of=train_users_of,
            n_train_users=n_train_users,
        )
        results.append(MethodResult(method.name, metrics, seconds))
    return EvalReport(
        results=tuple(results),
        users=len(relevant),
        train_interactions=len(split.train),
        test_interactions=len(test),
        dropped_interactions=dropped,
        split=("validation of " if config.validation else "") + config.split.describe(),
        ks=config.ks,
    )
