"""``vecrec bulk`` from the shell: output parts, one-line errors, and SIGKILL + ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.cli import main
from engine import Recommender

ROOT = Path(__file__).resolve().parents[1]


def hash_users(index: Path, path: Path, n: int) -> Path:
    """``n`` users over the hash index's items: user i likes items i..i+4 (mod catalogue)."""
    ids = [str(i) for i in Recommender.open(index).bundle.ids]
    rows = [
        {
            "user_id": f"u{u}",
            "history": [
                {"item_id": ids[(u * 7 + j) % len(ids)], "weight": 1.0 + j, "timestamp": 1e9 + j}
                for j in range(5)
            ],
        }
        for u in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def read_parts(out: Path) -> pd.DataFrame:
    return pd.concat(
        [pq.read_table(p).to_pandas() for p in sorted(out.glob("part-*.parquet"))],
        ignore_index=True,
    )


def test_bulk_writes_parts_and_refuses_to_mix_jobs(
    hash_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = hash_users(hash_index, tmp_path / "users.parquet", 250)
    out = tmp_path / "out"
    base = ["bulk", "--index", str(hash_index), "--users", str(users), "--out", str(out)]
    assert main([*base, "-k", "5", "--chunk-size", "100", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parts_written"] == 3 and summary["rows"] == 250 * 5
    frame = read_parts(out)
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
    assert frame.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    assert (out / "_SUCCESS").exists()
    # The same directory again: refused without --resume, and with a different request.
    assert main([*base, "-k", "5", "--chunk-size", "100", "--quiet"]) == 1
    assert "pass --resume" in capsys.readouterr().err
    assert main([*base, "-k", "6", "--chunk-size", "100", "--quiet", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "different job (changed: request)" in err and len(err.strip().splitlines()) == 1
    # Resuming a finished job redoes nothing.
    assert main([*base, "-k", "5", "--chunk-size", "100", "--quiet", "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parts_skipped"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--user-column", "who"], "has no column 'who'"),
        (["--filter", "nosuchfield=1"], "unknown filter field"),
        (["-k", "5000"], "k must be an integer"),
        (["--layout", "long"], "has no column 'item_id'"),
    ],
)
def test_bulk_errors_are_one_line(
    hash_index: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    users = hash_users(hash_index, tmp_path / "users.parquet", 3)
    argv = ["bulk", "--index", str(hash_index), "--users", str(users), "--out", str(tmp_path / "o")]
    assert main([*argv, "--quiet", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_long_layout_must_be_grouped_by_user(
    hash_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [str(i) for i in Recommender.open(hash_index).bundle.ids[:4]]
    path = tmp_path / "ratings.csv"
    pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ids[:3]}).to_csv(path, index=False)
    argv = ["bulk", "--index", str(hash_index), "--users", str(path), "--out", str(tmp_path / "o")]
    assert main([*argv, "--layout", "long", "--quiet"]) == 1
    assert "interactions of user 'a' are not contiguous" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_parts_and_redoes_at_most_one(
    hash_index: Path, tmp_path: Path
) -> None:
    users = hash_users(hash_index, tmp_path / "users.parquet", 6000)
    parts = 60
    command = [
        sys.executable, "-m", "api.cli", "bulk", "--index", str(hash_index), "--users",
        str(users), "-k", "10", "--strategy", "mean", "--chunk-size", "100", "--quiet", "--json",
    ]  # fmt: skip
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run([*command, "--out", str(clean)], cwd=ROOT, check=True, capture_output=True)

    child = subprocess.Popen([*command, "--out", str(killed)], cwd=ROOT, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(killed.glob("part-*.parquet"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in killed.glob("part-*.parquet")}
    assert 5 <= len(kept) < parts, "the job was not killed midway"
    assert len(list(killed.glob(".tmp-part-*"))) <= 1  # at most the part being written
    assert not (killed / "_SUCCESS").exists()

    done = subprocess.run(
        [*command, "--out", str(killed), "--resume"], cwd=ROOT, check=True, capture_output=True
    )
    summary = json.loads(done.stdout)
    # Only the parts that were missing are written: the one in flight is the only redone work.
    assert summary["parts_skipped"] == len(kept)
    assert summary["parts_written"] == parts - len(kept)
    assert all((killed / n).stat().st_mtime_ns == t for n, t in kept.items())
    assert not list(killed.glob(".tmp-*"))
    pd.testing.assert_frame_equal(read_parts(killed), read_parts(clean))
