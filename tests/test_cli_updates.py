"""``vecrec index update | compact``: files in, logged changes out, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from api.cli import main
from engine import Bundle
from tests.test_live import N_ITEMS, make_index


def run(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--indexes-dir", str(root.parent), "index", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_update_from_a_catalogue_like_file_then_compact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    root = make_index(tmp_path, "HNSW16")
    rows = pd.DataFrame(
        {
            "movieId": ["n1", "n2", "1"],
            "title": ["New One (2030)", "New Two (2031)", "Toy Story, Renamed (1995)"],
            "genres": ["Drama|Sci-Fi", None, "Animation"],
        }
    )
    upserts = tmp_path / f"up{suffix}"
    if suffix == ".csv":
        rows.to_csv(upserts, index=False)
    elif suffix == ".jsonl":
        rows.to_json(upserts, orient="records", lines=True)
    else:
        rows.to_parquet(upserts)
    deletes = tmp_path / "gone.txt"
    deletes.write_text("2\n3\nnever-was\n")
    code, out, err = run(
        capsys,
        root,
        "update",
        root.name,
        "--upsert",
        str(upserts),
        "--delete",
        str(deletes),
        "--model",
        "hash:64",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert (report["created"], report["replaced"], report["deleted"], report["missing"]) == (
        2,
        1,
        2,
        1,
    )
    assert report["items"] == N_ITEMS + 2 - 2 and report["pending_updates"] == 3 + 3
    bundle = Bundle.load(root)
    assert bundle.item_record(bundle.row_of["n1"])["genres"] == ["Drama", "Sci-Fi"]
    assert bundle.item_record(bundle.row_of["1"])["title"] == "Toy Story, Renamed (1995)"
    assert "2" not in bundle.row_of

    code, out, err = run(capsys, root, "info", root.name, "--no-recall")
    assert code == 0 and "updates    2 logged batches, 6 changes pending" in out

    code, out, err = run(capsys, root, "compact", root.name)
    assert code == 0 and "6 changes folded" in out
    compacted = Bundle.load(root)
    assert compacted.path != bundle.path and compacted.live_count == len(compacted) == N_ITEMS
    code, out, _ = run(capsys, root, "compact", root.name)
    assert code == 0 and "no live updates" in out


def test_update_errors_are_one_line_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_index(tmp_path, "Flat")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"movieId": ["x"], "colour": ["red"]}).to_csv(bad, index=False)
    no_id = tmp_path / "no-id.csv"
    pd.DataFrame({"title": ["T"]}).to_csv(no_id, index=False)
    cases = [
        (["--upsert", str(bad)], "unknown item field 'colour'"),
        (["--upsert", str(no_id)], "movieId"),
        (["--upsert", str(tmp_path / "missing.csv")], "missing.csv"),
        ([], "--upsert FILE and/or --delete FILE"),
    ]
    for extra, message in cases:
        code, out, err = run(capsys, root, "update", root.name, "--model", "hash:64", *extra)
        assert code == 1 and out == "", err
        assert err.startswith("vecrec: error:") and err.count("\n") == 1 and message in err
    assert not (root / "updates").exists()


def test_a_build_says_when_it_leaves_live_updates_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_index(tmp_path, "Flat")
    deletes = tmp_path / "gone.txt"
    deletes.write_text("1\n")
    assert (
        run(capsys, root, "update", root.name, "--delete", str(deletes), "--model", "hash:64")[0]
        == 0
    )
    catalog = tmp_path / "movies.csv"
    code = main(
        [
            "--indexes-dir",
            str(root.parent),
            "index",
            "build",
            str(catalog),
            "--name",
            root.name,
            "--id-column",
            "movieId",
            "--text",
            "{title}",
            "--model",
            "hash:64",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0 and "1 live-update batches logged on the previous version" in err
    assert "1" in Bundle.load(root).row_of  # the rebuilt version holds the catalogue's items
