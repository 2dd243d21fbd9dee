"""BM25 (bm25s): tokens, scores, storage in the bundle, and its quality on SciFact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.evaluation.beir import load_qrels, load_queries, search_metrics
from engine.lexical import LexicalIndex

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"

DOCS = [
    "A heist goes wrong in a small bank",
    "Space adventure: robots explore distant planets",
    "A quiet drama about a family farm",
    "Robots and the family that built them",
]


def test_scores_follow_shared_stemmed_words() -> None:
    index = LexicalIndex.build(DOCS)
    scores = index.scores("heists going wrong")
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == 0 and scores[1:].max() == 0.0
    robots = index.scores("robot family")
    # Both words beat one: the document holding robots and family comes first.
    assert int(np.argmax(robots)) == 3 and robots[3] > robots[1] > 0 and robots[3] > robots[2] > 0
    assert not index.scores("zyzzyva").any()
    assert not index.scores("the of and").any()  # stop words only


def test_save_and_load_give_the_same_scores(tmp_path: Path) -> None:
    index = LexicalIndex.build(DOCS)
    written = index.save(tmp_path)
    assert written and all(name.startswith("lexical/") for name in written)
    assert all((tmp_path / name).is_file() for name in written)
    meta = json.loads((tmp_path / "lexical" / "tokenizer.json").read_text())
    assert meta["rows"] == 4 and meta["stemmer"] == "english"
    loaded = LexicalIndex.load(tmp_path)
    for query in ("robot family", "heist", "quiet farm drama"):
        np.testing.assert_array_equal(loaded.scores(query), index.scores(query))


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="the shared SciFact data is not here")
def test_bm25_on_scifact_reaches_the_published_figure() -> None:
    """BEIR's BM25 (Anserini) scores nDCG@10 0.665 on SciFact; ours must come close."""
    ids, texts = [], []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(str(row["_id"]))
            texts.append(f"{row['title']} {row['text']}")
    index = LexicalIndex.build(texts)
    queries = load_queries(SCIFACT / "queries.jsonl")
    qrels = load_qrels(SCIFACT / "qrels" / "test.tsv")
    total = 0.0
    for query, judged in qrels.items():
        scores = index.scores(queries[query])
        top = np.argsort(-scores, kind="stable")[:10]
        total += search_metrics([ids[i] for i in top], judged)["nDCG@10"]
    assert total / len(qrels) >= 0.64
