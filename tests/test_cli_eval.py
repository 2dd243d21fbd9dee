"""``vecrec eval recommend`` and ``vecrec eval search`` end to end, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT

CLUSTERS = 3
ITEMS_PER_CLUSTER = 20
USERS = 30


def vecrec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Items in 3 word-clusters; each user rates only items of one cluster, in time order.

    Written as a pipe-separated Latin-1 catalogue with its own column names, as a user's file
    in another layout would be.
    """
    work = tmp_path_factory.mktemp("evaldata")
    words = ["café crème", "rocket orbit", "forest river"]
    rows = [
        {"sku": f"c{c}i{i}", "label": f"{words[c]} item {i}", "kind": f"k{c}"}
        for c in range(CLUSTERS)
        for i in range(ITEMS_PER_CLUSTER)
    ]
    pd.DataFrame(rows).to_csv(work / "items.psv", sep="|", index=False, encoding="latin-1")
    events = []
    for u in range(USERS):
        c = u % CLUSTERS
        for t, i in enumerate(range(u % 5, u % 5 + 12)):
            events.append(
                {
                    "who": f"u{u}",
                    "what": f"c{c}i{i % ITEMS_PER_CLUSTER}",
                    "stars": 5,
                    "when": 1000 + t,
                }
            )
    pd.DataFrame(events).to_csv(work / "events.csv", index=False)
    return work


def _eval_args(data: Path, *extra: str) -> list[str]:
    return [
        "eval", "recommend",
        "--catalog", str(data / "items.psv"), "--delimiter", "|", "--encoding", "latin-1",
        "--id-column", "sku", "--text", "{label}", "--model", "hash:64", "--quiet",
        "--interactions", str(data / "events.csv"), "--user-column", "who",
        "--item-column", "what", "--rating-column", "stars", "--timestamp-column", "when",
        "--threshold", "4", "--ks", "5,10", *extra,
    ]  # fmt: skip


def test_eval_recommend_json(data: Path) -> None:
    result = vecrec(*_eval_args(data, "--json"), cwd=data)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["users"] == USERS
    assert set(out["results"]) == {
        "random", "popular", "item-knn", "content",
        "content+popularity", "collaborative", "hybrid",
    }  # fmt: skip
    # The CF vectors learnt on the training part find each user's cluster as item-kNN does.
    assert out["results"]["collaborative"]["NDCG@10"] > 2 * out["results"]["random"]["NDCG@10"]
    knn, rnd = out["results"]["item-knn"], out["results"]["random"]
    content = out["results"]["content"]
    # Users stay inside one cluster: co-occurrence finds their next items, chance does not.
    assert knn["NDCG@10"] > 2 * rnd["NDCG@10"] and knn["HitRate@10"] > rnd["HitRate@10"]
    # Each user has exactly 10 unseen items in their cluster, and only those share its two
    # words: the content vectors rank all of them in the top 10.
    assert content["Recall@10"] == pytest.approx(1.0)
    for method in out["results"].values():
        for key in ("Recall@5", "NDCG@10", "MRR", "Coverage@10", "Diversity@10", "Novelty@10"):
            assert 0.0 <= method[key] <= (1.0 if key != "Novelty@10" else 100.0), key
    assert out["ann"]["recall_at_10"] == 1.0


def test_eval_recommend_table_and_report(data: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = vecrec(
        *_eval_args(data, "--report", str(report), "--methods", "popular,item-knn"), cwd=data
    )
    assert result.returncode == 0, result.stderr
    assert "temporal split" in result.stdout and "item-knn" in result.stdout
    assert "random" not in result.stdout.split("\n", 2)[2]
    text = (report / "report.md").read_text()
    assert "| item-knn |" in text and "NDCG@10" in text and "ANN quality" in text
    for png in ("metrics_at_k.png", "ann_recall_latency.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_validation_split_uses_fewer_interactions(data: Path) -> None:
    test = json.loads(vecrec(*_eval_args(data, "--json"), cwd=data).stdout)
    valid = json.loads(vecrec(*_eval_args(data, "--json", "--validation"), cwd=data).stdout)
    assert valid["train_interactions"] < test["train_interactions"]
    assert "validation" in valid["split"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--methods", "random,magic"), "unknown method"),
        (("--holdout", "0"), "holdout"),
        (("--threshold", "99"), "relevance threshold"),
        (("--user-column", "nobody"), "nobody"),
    ],
)
def test_eval_recommend_bad_input_is_one_line(
    data: Path, extra: tuple[str, ...], message: str
) -> None:
    result = vecrec(*_eval_args(data, *extra), cwd=data)
    assert result.returncode != 0
    lines = [
        line for line in result.stderr.splitlines() if not line.startswith("building an index")
    ]
    assert len(lines) == 1 and lines[0].startswith("vecrec: error:"), result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("beir")
    topics = ["volcano lava eruption", "protein folding enzyme", "orbit satellite launch",
              "river delta sediment", "vaccine antibody response", "glacier ice melt"]  # fmt: skip
    with (work / "corpus.jsonl").open("w") as fh:
        for n, topic in enumerate(topics):
            fh.write(
                json.dumps(
                    {"_id": f"d{n}", "title": topic.split()[0], "text": topic, "metadata": {}}
                )
                + "\n"
            )
    with (work / "queries.jsonl").open("w") as fh:
        for n, topic in enumerate(topics):
            fh.write(json.dumps({"_id": f"q{n}", "text": topic}) + "\n")
        fh.write(json.dumps({"_id": "unjudged", "text": "nothing"}) + "\n")
    (work / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{n}\td{n}\t1" for n in range(len(topics))]
    (work / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return work


def test_eval_search_finds_the_exact_documents(beir: Path) -> None:
    result = vecrec(
        "eval", "search", "--corpus", str(beir / "corpus.jsonl"),
        "--queries", str(beir / "queries.jsonl"), "--qrels", str(beir / "qrels" / "test.tsv"),
        "--model", "hash:64", "--quiet", "-k", "5", "--json",
        cwd=beir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    # Each query is its document's text (title + text adds one repeated word): rank 1 every time.
    assert out["queries"] == 6
    assert out["metrics"]["nDCG@10"] == pytest.approx(1.0)
    assert out["metrics"]["MRR@10"] == pytest.approx(1.0)
    assert out["metrics"]["Recall@5"] == pytest.approx(1.0)


def test_eval_search_bad_qrels(beir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq0\td0\tnot-a-number\n")
    result = vecrec(
        "eval", "search", "--corpus", str(beir / "corpus.jsonl"),
        "--queries", str(beir / "queries.jsonl"), "--qrels", str(bad), "--model", "hash:64",
        cwd=beir,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().startswith("vecrec: error: cannot read qrels")
    assert "Traceback" not in result.stderr
