"""Per-user train/test splits of an interaction log.

* ``temporal``: each user's last interactions (by timestamp) are held out: the last
  ``holdout`` fraction when ``holdout < 1``, else the last ``int(holdout)`` interactions.
* ``leave-one-out``: each user's last interaction is held out.

Ties in time (MovieLens users rate many films in the same second) are broken by a seeded random
order, so a split is reproducible. Without timestamps the seeded random order is the only order.
A user is kept only with at least ``min_history`` training and one test interaction. Test rows
whose item is also in the user's training rows are dropped: seen items are never recommended.

The validation split applies the same rule to the training part, so choices (weights, neighbours)
are made on it and the test split is only used to confirm them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from engine.errors import InvalidArgument

SplitMethod = Literal["temporal", "leave-one-out"]


@dataclass(frozen=True)
class SplitConfig:
    method: SplitMethod = "temporal"
    holdout: float = 0.2
    min_history: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("temporal", "leave-one-out"):
            raise InvalidArgument(f"unknown split {self.method!r}", field="split")
        if not (math.isfinite(self.holdout) and self.holdout > 0):
            raise InvalidArgument("holdout must be > 0", field="holdout")
        if self.holdout >= 1 and not float(self.holdout).is_integer():
            raise InvalidArgument("holdout is a fraction below 1 or a whole count", field="holdout")
        if self.min_history < 1:
            raise InvalidArgument("min_history must be >= 1", field="min_history")

    def describe(self) -> str:
        if self.method == "leave-one-out":
            held = "last interaction"
        elif self.holdout < 1:
            held = f"last {self.holdout:.0%} of interactions"
        else:
            held = f"last {int(self.holdout)} interactions"
        return (
            f"{self.method} split: each user's {held} held out, "
            f">= {self.min_history} training interactions, seed {self.seed}"
        )


@dataclass(frozen=True)
class Split:
    """Rows of the interaction frame (user, item, weight, timestamp)."""

    train: pd.DataFrame
    test: pd.DataFrame


def _held_out(n: int, config: SplitConfig) -> int:
    if config.method == "leave-one-out":
        return 1
    if config.holdout < 1:
        return max(1, round(n * config.holdout))
    return int(config.holdout)


def split_interactions(frame: pd.DataFrame, config: SplitConfig) -> Split:
    """Split ``frame`` per user as ``config`` says."""
    rng = np.random.default_rng(config.seed)
    ordered = frame.assign(_tie=rng.permutation(len(frame)))
    has_time = ordered["timestamp"].notna().any()
    keys = ["user", "timestamp", "_tie"] if has_time else ["user", "_tie"]
    ordered = ordered.sort_values(keys, kind="stable", na_position="first")
    position = ordered.groupby("user", sort=False).cumcount().to_numpy()
    size = ordered.groupby("user", sort=False)["item"].transform("size").to_numpy()
    held = np.array([_held_out(int(n), config) for n in size])
    is_test = position >= size - held
    train = ordered[~is_test]
    test = ordered[is_test]
    seen = pd.MultiIndex.from_frame(train[["user", "item"]])
    test = test[~pd.MultiIndex.from_frame(test[["user", "item"]]).isin(seen)]
    kept = train.groupby("user").size()
    users = set(kept[kept >= config.min_history].index) & set(test["user"])
    train = train[train["user"].isin(users)]
    test = test[test["user"].isin(users)]
    drop = ["_tie"]
    return Split(
        train=train.drop(columns=drop).reset_index(drop=True),
        test=test.drop(columns=drop).reset_index(drop=True),
    )


def validation_split(frame: pd.DataFrame, config: SplitConfig) -> Split:
    """The split of the training part of ``split_interactions(frame, config)`` (for tuning)."""
    return split_interactions(split_interactions(frame, config).train, config)
