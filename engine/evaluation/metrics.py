"""Ranking metrics over top-K lists, averaged over users with at least one relevant item.

For a user with relevant set R and list L (best first), at cut-off K:

* Recall@K = |L[:K] ∩ R| / |R|
* HitRate@K = 1 if L[:K] ∩ R else 0
* NDCG@K = Σ_{i<K, L[i]∈R} 1/log2(i+2)  /  Σ_{i<min(|R|,K)} 1/log2(i+2)   (binary gains)
* MRR = 1/(rank of the first relevant item in L), 0 when none (L is cut at the largest K)

List-level, also at K:

* Coverage@K: distinct items in all users' L[:K] / catalogue size
* Diversity@K (intra-list): mean over users of the mean pairwise cosine distance (1 - cos) of
  the items' content vectors in L[:K]
* Novelty@K: mean over users of the mean self-information -log2(p_i) of L[:K], where
  p_i = (training users of i + 1) / (training users + 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2))


def user_metrics(ranked: Sequence[str], relevant: set[str], ks: Sequence[int]) -> dict[str, float]:
    """Accuracy metrics of one list against one relevant set."""
    hits = np.array([item in relevant for item in ranked], dtype=bool)
    out: dict[str, float] = {}
    discounts = _discounts(max(max(ks), len(ranked)))
    for k in ks:
        top = hits[:k]
        found = int(top.sum())
        out[f"Recall@{k}"] = found / len(relevant)
        out[f"HitRate@{k}"] = float(found > 0)
        ideal = discounts[: min(len(relevant), k)].sum()
        out[f"NDCG@{k}"] = float(discounts[: len(top)][top].sum() / ideal)
    first = np.flatnonzero(hits[: max(ks)])
    out["MRR"] = float(1.0 / (first[0] + 1)) if first.size else 0.0
    return out


def ranking_metrics(
    lists: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    ks: Sequence[int],
    *,
    catalogue: Sequence[str],
    vectors: np.ndarray | None = None,
    row_of: Mapping[str, int] | None = None,
    train_users_of: Mapping[str, int] | None = None,
    n_train_users: int = 0,
) -> dict[str, float]:
    """Mean metrics over the users in ``relevant`` (each must have a list in ``lists``).

    ``vectors`` (``float32 (n, d)``, unit rows, indexed through ``row_of``) enables diversity;
    ``train_users_of`` (item → distinct training users) enables novelty.
    """
    users = [u for u in relevant if relevant[u]]
    if not users:
        return {}
    totals: dict[str, float] = {}
    for user in users:
        for name, value in user_metrics(lists[user], relevant[user], ks).items():
            totals[name] = totals.get(name, 0.0) + value
    out = {name: value / len(users) for name, value in totals.items()}
    for k in ks:
        distinct = {item for user in users for item in lists[user][:k]}
        out[f"Coverage@{k}"] = len(distinct) / max(len(catalogue), 1)
        if vectors is not None and row_of is not None:
            out[f"Diversity@{k}"] = float(
                np.mean([_intra_list_distance(lists[u][:k], vectors, row_of) for u in users])
            )
        if train_users_of is not None and n_train_users > 0:
            out[f"Novelty@{k}"] = float(
                np.mean([_novelty(lists[u][:k], train_users_of, n_train_users) for u in users])
            )
    return out


def _intra_list_distance(
    items: Sequence[str], vectors: np.ndarray, row_of: Mapping[str, int]
) -> float:
    rows = [row_of[i] for i in items if i in row_of]
    if len(rows) < 2:
        return 0.0
    v = np.asarray(vectors[rows], dtype=np.float64)
    sims = v @ v.T
    n = len(rows)
    mean_sim = (sims.sum() - np.trace(sims)) / (n * (n - 1))
    return float(1.0 - mean_sim)


def _novelty(items: Sequence[str], users_of: Mapping[str, int], n_users: int) -> float:
    if not items:
        return 0.0
    p = np.array([(users_of.get(i, 0) + 1) / (n_users + 1) for i in items])
    return float(np.mean(-np.log2(p)))
