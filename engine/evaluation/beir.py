"""Text-search evaluation on BEIR-format collections (corpus.jsonl, queries.jsonl, qrels/*.tsv).

Scores follow BEIR/pytrec_eval: nDCG@10 with graded gains (the qrels' relevance values),
Recall@100 over the relevant documents, MRR@10. Only queries that have qrels are evaluated.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import CatalogError
from engine.recommender import Recommender


@dataclass(frozen=True)
class SearchReport:
    metrics: dict[str, float]
    queries: int
    seconds_per_query: float


def load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    queries[str(row["_id"])] = str(row["text"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read queries {path}: {exc}", field="queries") from exc
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id → {corpus-id: relevance}`` from a BEIR qrels TSV (header line first)."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = next(reader, None)
            if header is None:
                raise CatalogError(f"qrels {path} is empty", field="qrels")
            for row in reader:
                if not row:
                    continue
                query, doc, score = row[0].strip(), row[1].strip(), int(row[2])
                if score > 0:
                    qrels.setdefault(query, {})[doc] = score
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read qrels {path}: {exc}", field="qrels") from exc
    return qrels


def search_metrics(
    ranked: Sequence[str],
    judged: Mapping[str, int],
    *,
    ndcg_k: int = 10,
    recall_k: int = 100,
    mrr_k: int = 10,
) -> dict[str, float]:
    """BEIR's per-query nDCG@k (graded), Recall@k and MRR@k; grades <= 0 are not relevant."""
    judged = {doc: grade for doc, grade in judged.items() if grade > 0}
    gains = np.array([judged.get(doc, 0) for doc in ranked[:ndcg_k]], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    ideal = np.sort(np.fromiter(judged.values(), dtype=np.float64))[::-1][:ndcg_k]
    dcg = float((gains * discounts[: len(gains)]).sum())
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    relevant = set(judged)
    first = next((i for i, doc in enumerate(ranked[:mrr_k]) if doc in relevant), None)
    return {
        f"nDCG@{ndcg_k}": dcg / idcg if idcg > 0 else 0.0,
        f"Recall@{recall_k}": len(relevant & set(ranked[:recall_k])) / len(relevant),
        f"MRR@{mrr_k}": 0.0 if first is None else 1.0 / (first + 1),
    }


def evaluate_search(
    recommender: Recommender,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    k: int = 100,
) -> SearchReport:
    """Run ``Recommender.search`` for every judged query and average BEIR's metrics."""
    import time

    judged = [q for q in qrels if q in queries and qrels[q]]
    if not judged:
        raise CatalogError("no query in the qrels has a text in the queries file", field="qrels")
    totals: dict[str, float] = {}
    start = time.perf_counter()
    for query in judged:
        ranked = recommender.search(queries[query], k=k).ids
        for name, value in search_metrics(ranked, qrels[query], recall_k=k).items():
            totals[name] = totals.get(name, 0.0) + value
    seconds = time.perf_counter() - start
    return SearchReport(
        metrics={name: value / len(judged) for name, value in totals.items()},
        queries=len(judged),
        seconds_per_query=seconds / len(judged),
    )
