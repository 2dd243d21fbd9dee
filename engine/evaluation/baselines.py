"""Recommendation methods under evaluation: the engine and the baselines it must beat.

Each method is fitted on the training interactions, then asked for a ranked list of unseen items
per user. The seen set (every training item of the user) is excluded for every method alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from engine.recommender import Recommender
from engine.usermodel import HistoryEvent


class Method(Protocol):
    """A recommender under evaluation."""

    name: str

    def fit(self, train: pd.DataFrame) -> None:
        """Learn from training interactions (columns user, item, weight, timestamp)."""
        ...

    def recommend(self, history: pd.DataFrame, k: int) -> list[str]:
        """Top-``k`` unseen item ids for a user whose training rows are ``history``."""
        ...


class RandomMethod:
    """Uniformly random unseen catalogue items (seeded)."""

    name = "random"

    def __init__(self, catalogue: Sequence[str], seed: int = 0) -> None:
        self.catalogue = np.asarray(list(catalogue), dtype=object)
        self.rng = np.random.default_rng(seed)

    def fit(self, train: pd.DataFrame) -> None:
        pass

    def recommend(self, history: pd.DataFrame, k: int) -> list[str]:
        seen = set(history["item"])
        out: list[str] = []
        for item in self.catalogue[self.rng.permutation(len(self.catalogue))]:
            if item not in seen:
                out.append(str(item))
                if len(out) == k:
                    break
        return out


class PopularMethod:
    """Most training users first."""

    name = "popular"

    def __init__(self, catalogue: Sequence[str]) -> None:
        self.catalogue = list(catalogue)
        self.order: list[str] = []

    def fit(self, train: pd.DataFrame) -> None:
        counts = train.drop_duplicates(["user", "item"]).groupby("item").size()
        counts = counts.reindex(self.catalogue, fill_value=0)
        # Ties keep catalogue order: deterministic.
        ranks = np.argsort(-counts.to_numpy(), kind="stable")
        self.order = [self.catalogue[i] for i in ranks]

    def recommend(self, history: pd.DataFrame, k: int) -> list[str]:
        seen = set(history["item"])
        out: list[str] = []
        for item in self.order:
            if item not in seen:
                out.append(item)
                if len(out) == k:
                    break
        return out


class ItemKNNMethod:
    """Item-based collaborative filtering: cosine similarity of items' training-user vectors.

    A user's score for item j is Σ_{i ∈ user's positives} sim(i, j), keeping each item's
    ``neighbours`` most similar items (None keeps all). Positives are training interactions with
    weight >= ``positive_threshold`` (all when None). Items that score nothing are ranked after,
    by popularity.
    """

    name = "item-knn"

    def __init__(
        self,
        catalogue: Sequence[str],
        *,
        neighbours: int | None = None,
        positive_threshold: float | None = None,
    ) -> None:
        self.catalogue = list(catalogue)
        self.col_of = {item: j for j, item in enumerate(self.catalogue)}
        self.neighbours = neighbours
        self.positive_threshold = positive_threshold
        self.similarity: sp.csr_matrix | None = None
        self.popular = PopularMethod(catalogue)

    def fit(self, train: pd.DataFrame) -> None:
        self.popular.fit(train)
        positives = self._positives(train)
        users = {u: i for i, u in enumerate(positives["user"].unique())}
        rows = positives["user"].map(users).to_numpy()
        cols = positives["item"].map(self.col_of).to_numpy()
        x = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(users), len(self.catalogue)),
        )
        x.data[:] = 1.0  # duplicates summed by the constructor count once
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        xn = x @ sp.diags(1.0 / norms)
        sim = (xn.T @ xn).tocsr()
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        if self.neighbours is not None:
            sim = _keep_top_per_row(sim, self.neighbours)
        self.similarity = sim

    def _positives(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[frame["item"].isin(self.col_of)]
        if self.positive_threshold is not None:
            frame = frame[frame["weight"] >= self.positive_threshold]
        return frame

    def recommend(self, history: pd.DataFrame, k: int) -> list[str]:
        assert self.similarity is not None, "fit first"
        seen = set(history["item"])
        liked = [self.col_of[i] for i in self._positives(history)["item"]]
        scores = np.zeros(len(self.catalogue), dtype=np.float64)
        if liked:
            scores = np.asarray(self.similarity[liked].sum(axis=0)).ravel()
        for item in seen:
            col = self.col_of.get(item)
            if col is not None:
                scores[col] = -np.inf
        candidates = np.flatnonzero(scores > 0)
        top = candidates[np.argsort(-scores[candidates], kind="stable")][:k]
        out = [self.catalogue[j] for j in top]
        if len(out) < k:
            chosen = set(out) | seen
            out += [i for i in self.popular.recommend(history, k + len(out)) if i not in chosen][
                : k - len(out)
            ]
        return out


def _keep_top_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each row (the similarity matrix is symmetric)."""
    matrix = matrix.tocsr()
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        if end == start:
            continue
        data = matrix.data[start:end]
        idx = matrix.indices[start:end]
        if len(data) > n:
            keep = np.argpartition(-data, n - 1)[:n]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(len(data), r))
        cols.append(idx)
        vals.append(data)
    if not rows:
        return matrix
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=matrix.shape
    )


class EngineMethod:
    """The engine itself, through ``Recommender.recommend`` exactly as users call it."""

    def __init__(self, recommender: Recommender, name: str = "content", **options: object) -> None:
        self.recommender = recommender
        self.name = name
        self.options = options

    def fit(self, train: pd.DataFrame) -> None:
        pass  # content vectors come from the bundle; nothing to learn from interactions

    def recommend(self, history: pd.DataFrame, k: int) -> list[str]:
        times = history["timestamp"].to_numpy(dtype=np.float64)
        events = [
            HistoryEvent(str(item), float(weight), None if np.isnan(t) else float(t))
            for item, weight, t in zip(
                history["item"].tolist(), history["weight"].tolist(), times.tolist(), strict=True
            )
        ]
        results = self.recommender.recommend(events, k=k, exclude_seen=True, **self.options)  # type: ignore[arg-type]
        return results.ids
