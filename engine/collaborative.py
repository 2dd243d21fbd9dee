"""Collaborative item vectors: implicit-feedback ALS learnt at build time, fold-in at query time.

Training (Hu, Koren & Volinsky 2008, "Collaborative Filtering for Implicit Feedback Datasets")
factorises the binary user × item matrix ``P`` (1 where the user interacted) with confidences
``c_ui = 1 + alpha · p_ui``::

    min_{X, Y}  Σ_{u,i} c_ui (p_ui - x_u · y_i)²  +  reg · (|X|² + |Y|²)

by alternating exact least squares (each side's rows are independent ``f × f`` solves, batched).
Positives are the interactions at or above ``positive_threshold`` (all of them without one); on
MovieLens, training on ratings >= 4 scores NDCG@10 0.130 on the validation split against 0.094
for every rating (bench/RESULTS.md, issue 9).

The bundle keeps only the item factors ``Y`` (``float32 (n, f)``; zero rows for items with no
interaction). A user's vector is *folded in* at query time from their history with the same
least-squares step the training alternates (``x_u = (YᵀY + alpha YᵤᵀWYᵤ + reg I)⁻¹ Yᵤᵀ(1 +
alpha w)``), so a new user needs no retraining; their scores are ``Y x_u``, served by a FAISS
inner-product index over ``Y``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp

from engine.ann import Searcher
from engine.errors import BundleCorrupt, InvalidArgument

CF_VECTORS_FILE = "cf_vectors.npy"
CF_INDEX_FILE = "cf_index.faiss"
# Rows solved per batched ``np.linalg.solve``: bounds the (batch, f, f) working memory.
_SOLVE_BATCH = 2048


@dataclass(frozen=True)
class ALSConfig:
    """iALS hyper-parameters (defaults chosen on the MovieLens validation split)."""

    factors: int = 32
    regularization: float = 10.0
    alpha: float = 1.0
    iterations: int = 8
    seed: int = 0
    # Interactions weighing at least this are the positives, in training and in fold-in (4 on
    # a 5-star scale: what a user liked predicts what they will like, what they merely rated
    # does less); None: every interaction.
    positive_threshold: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.factors <= 1024:
            raise InvalidArgument("factors must be from 1 to 1024", field="cf_factors")
        if not (self.regularization > 0 and self.alpha >= 0 and self.iterations >= 1):
            raise InvalidArgument(
                "regularization must be > 0, alpha >= 0 and iterations >= 1", field="cf"
            )


def interaction_matrix(interactions: pd.DataFrame, item_ids: list[str]) -> sp.csr_matrix:
    """Binary ``float64 (users, n)`` matrix of who interacted with which of ``item_ids``."""
    col_of = {item: j for j, item in enumerate(item_ids)}
    known = interactions[interactions["item"].isin(col_of)]
    users = pd.factorize(known["user"])[0]
    cols = known["item"].map(col_of).to_numpy(dtype=np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(users)), (users, cols)),
        shape=(int(users.max()) + 1 if len(users) else 0, len(item_ids)),
    )
    matrix.data[:] = 1.0  # repeated interactions count once
    return matrix


def _solve_side(p: sp.csr_matrix, other: np.ndarray, config: ALSConfig) -> np.ndarray:
    """One ALS half-step: the rows of ``p`` (``m × n``) against fixed factors ``other (n, f)``."""
    f = other.shape[1]
    gram = other.T @ other + config.regularization * np.eye(f)
    outer = np.einsum("ni,nj->nij", other, other).reshape(len(other), f * f)
    out = np.zeros((p.shape[0], f))
    for start in range(0, p.shape[0], _SOLVE_BATCH):
        block = p[start : start + _SOLVE_BATCH]
        lhs = (config.alpha * block) @ outer
        lhs = lhs.reshape(-1, f, f) + gram[None]
        rhs = (1.0 + config.alpha) * (block @ other)
        out[start : start + len(rhs)] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    return out


def train_als(matrix: sp.csr_matrix, config: ALSConfig) -> np.ndarray:
    """Item factors ``float32 (n, f)`` of a binary ``users × n`` matrix (zero rows: unseen items)."""
    rng = np.random.default_rng(config.seed)
    n = matrix.shape[1]
    items = rng.normal(0.0, 0.01, (n, config.factors))
    by_item = matrix.T.tocsr()
    seen = np.diff(by_item.indptr) > 0
    for _ in range(config.iterations):
        user_factors = _solve_side(matrix, items, config)
        items = _solve_side(by_item, user_factors, config)
    items[~seen] = 0.0
    return items.astype(np.float32)


class CollaborativeModel:
    """Item factors over the bundle's rows and what is needed to fold users in.

    ``vectors`` is ``float32 (rows, f)``; :attr:`present` marks rows that have a vector (items
    seen in training). Rows beyond ``rows`` (appended by live updates) have none.
    """

    def __init__(self, vectors: np.ndarray, config: ALSConfig, index: Any = None) -> None:
        self.vectors = vectors
        self.config = config
        self.present: np.ndarray = np.any(vectors != 0, axis=1)
        vectors64 = vectors.astype(np.float64)
        self._gram = vectors64.T @ vectors64
        if index is None:
            # Exact: f-dimensional scans are cheap (9,742 x 64 floats: ~0.1 ms a query).
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(np.ascontiguousarray(vectors))
        self.index = index
        self.searcher = Searcher(index, vectors)

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])

    def fold_in(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """``float32 (f,)`` user vector from positive history ``rows`` with confidences
        ``weights > 0`` (1 = an ordinary interaction; recency lowers it); None when no row has
        a vector."""
        rows = np.asarray(rows, dtype=np.int64)
        keep = rows < self.rows
        rows, weights = rows[keep], np.asarray(weights, dtype=np.float64)[keep]
        keep = self.present[rows]
        rows, weights = rows[keep], weights[keep]
        if len(rows) == 0:
            return None
        y = self.vectors[rows].astype(np.float64)
        c = self.config
        lhs = self._gram + c.alpha * (y * weights[:, None]).T @ y
        lhs += c.regularization * np.eye(y.shape[1])
        rhs = ((1.0 + c.alpha * weights)[:, None] * y).sum(axis=0)
        return np.linalg.solve(lhs, rhs).astype(np.float32)

    def scores(self, user: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``float32 (m,)`` predicted preference of ``rows`` (0 for rows with no vector)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float32)
        inside = rows < self.rows
        out[inside] = self.vectors[rows[inside]] @ user
        return out

    def has_vector(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=bool)
        inside = rows < self.rows
        out[inside] = self.present[rows[inside]]
        return out

    def search(self, user: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """Top-``k`` rows (``int64``) by ``Y · user`` among ``allowed`` rows that have a vector."""
        mask = self.present if allowed is None else allowed[: self.rows] & self.present
        _, found = self.searcher.search(user[None, :].astype(np.float32), k, mask)
        rows = found[0]
        return rows[rows >= 0]

    # -- storage --------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "method": "implicit ALS",
            **asdict(self.config),
            "items_with_vectors": int(self.present.sum()),
        }

    def save(self, directory: Path) -> list[str]:
        np.save(directory / CF_VECTORS_FILE, np.ascontiguousarray(self.vectors, np.float32))
        faiss.write_index(self.index, str(directory / CF_INDEX_FILE))
        return [CF_VECTORS_FILE, CF_INDEX_FILE]

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any], rows: int) -> CollaborativeModel:
        try:
            vectors = np.load(directory / CF_VECTORS_FILE)
            index = faiss.read_index(str(directory / CF_INDEX_FILE))
            fields = {k: meta[k] for k in ALSConfig.__dataclass_fields__ if k in meta}
            config = ALSConfig(**fields)
        except Exception as exc:
            raise BundleCorrupt(
                f"bundle {directory}: unreadable collaborative vectors: {exc}"
            ) from exc
        if vectors.dtype != np.float32 or vectors.ndim != 2 or len(vectors) != rows:
            raise BundleCorrupt(
                f"bundle {directory}: collaborative vectors have shape {vectors.shape}, "
                f"expected ({rows}, f) float32"
            )
        if index.ntotal != rows or index.d != vectors.shape[1]:
            raise BundleCorrupt(f"bundle {directory}: collaborative index does not match")
        return cls(vectors, config, index)

    def take(self, rows: np.ndarray, total: int) -> CollaborativeModel:
        """The model over ``total`` new rows: row ``j < len(rows)`` is old row ``rows[j]``
        (compaction keeps live rows in order; rows appended live have no vector yet)."""
        out = np.zeros((total, self.vectors.shape[1]), dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        inside = rows < self.rows
        out[np.flatnonzero(inside)] = self.vectors[rows[inside]]
        return CollaborativeModel(out, self.config)


def train_model(
    interactions: pd.DataFrame, item_ids: list[str], config: ALSConfig | None = None
) -> CollaborativeModel:
    """Learn item vectors for ``item_ids`` (the bundle's rows, in order) from interactions
    (columns ``user``, ``item``)."""
    config = config or ALSConfig()
    if config.positive_threshold is not None:
        interactions = interactions[interactions["weight"] >= config.positive_threshold]
        if interactions.empty:
            raise InvalidArgument(
                f"no interaction weighs at least the positive threshold "
                f"{config.positive_threshold}: nothing to learn from",
                field="cf_positive_threshold",
            )
    matrix = interaction_matrix(interactions, item_ids)
    if matrix.nnz == 0:
        raise InvalidArgument(
            "no interaction names an item of the catalogue: nothing to learn from",
            field="interactions",
        )
    return CollaborativeModel(train_als(matrix, config), config)
