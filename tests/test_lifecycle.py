"""Index lifecycle: one writer at a time, builds killed at any point, list / rollback / gc."""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import json
import os
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from engine import Bundle, BundleCorrupt, HashEmbedder, IndexLocked, InvalidArgument
from engine.bundle import CURRENT_FILE, TMP_PREFIX
from engine.errors import BundleNotFound
from engine.manifest import VECTORS_FILE
from engine.versions import current_version, gc, list_indexes, list_versions, rollback
from engine.writer_lock import LOCK_FILE, writer_lock
from indexer.build import BuildConfig, build
from indexer.sample import SAMPLE_DIR
from tests.conftest import movies_slice, sample_build
from tests.test_cli import cli_env, vecrec_command

BIG_ITEMS = 20_000
KILL_TRIES = 10


# -- helpers ---------------------------------------------------------------------------------------


def small_config(tmp_path: Path, n: int, name: str = "m") -> BuildConfig:
    """The first ``n`` sample movies: a build takes a few milliseconds."""
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    directory = tmp_path / f"catalog-{n}"
    directory.mkdir(exist_ok=True)
    catalog = movies_slice(directory, movies["movieId"][:n].tolist())
    return sample_build(tmp_path / "idx", catalog, name, popularity=False)


def four_versions(tmp_path: Path) -> tuple[Path, list[str]]:
    """``idx/m`` with versions of 10, 20, 30 and 40 items, oldest first; the last is current."""
    names = []
    for n in (10, 20, 30, 40):
        names.append(build(small_config(tmp_path, n), HashEmbedder(32)).path.name)
    return tmp_path / "idx" / "m", names


def cli(capsys: pytest.CaptureFixture[str], indexes: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--indexes-dir", str(indexes), *args])
    out, err = capsys.readouterr()
    return code, out, err


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF
    path.write_bytes(bytes(data))


def vecrec_process(indexes: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*vecrec_command(), "--indexes-dir", str(indexes), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=indexes.parent,
    )


# -- the writer lock -------------------------------------------------------------------------------


def test_second_writer_is_refused_while_the_lock_is_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = small_config(tmp_path, 20)
    first = build(config, HashEmbedder(32))
    root = tmp_path / "idx" / "m"
    with writer_lock(root):
        with pytest.raises(IndexLocked, match=r"index 'm' is locked: another writer \(pid \d+\)"):
            build(config, HashEmbedder(32))
        with pytest.raises(IndexLocked):
            rollback(root, first.path.name)
        with pytest.raises(IndexLocked):
            gc(root, keep=1)
        code, _, err = cli(
            capsys, tmp_path / "idx", "index", "build", str(config.catalog.path), "--name", "m",
            "--id-column", "movieId", "--model", "hash:32", "--quiet",
        )  # fmt: skip
        assert code == 1
        assert err.startswith("vecrec: error: index 'm' is locked") and err.count("\n") == 1
        assert [v.version for v in list_versions(root)] == [first.path.name]
    # Released at the end of the block: the same build now works.
    second = build(config, HashEmbedder(32))
    assert current_version(root) == second.path.name


def test_lock_is_released_when_the_holder_raises(tmp_path: Path) -> None:
    root = tmp_path / "idx" / "m"
    with pytest.raises(RuntimeError), writer_lock(root):
        raise RuntimeError("boom")
    with writer_lock(root):
        pass
    # A failed build releases it too.
    config = small_config(tmp_path, 10)
    broken = dataclasses.replace(config, factory="NoSuchFactory")
    with pytest.raises(InvalidArgument):
        build(broken, HashEmbedder(32))
    build(config, HashEmbedder(32))


def test_failed_first_build_leaves_no_trace(tmp_path: Path) -> None:
    config = dataclasses.replace(small_config(tmp_path, 10), indexes_dir=tmp_path / "new" / "idx")
    with pytest.raises(InvalidArgument):
        build(dataclasses.replace(config, factory="NoSuchFactory", cache=False), HashEmbedder(32))
    assert not (tmp_path / "new").exists()
    build(config, HashEmbedder(32))
    assert (tmp_path / "new" / "idx" / "m" / LOCK_FILE).is_file()


def test_lock_on_a_file_removed_meanwhile_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / LOCK_FILE).touch()
    real_flock = fcntl.flock
    calls: list[int] = []

    def flock_after_a_removal(fd: int, operation: int) -> None:
        if not calls:
            # Another holder removed the directory's only file, and a newcomer created it anew.
            (root / LOCK_FILE).unlink()
            (root / LOCK_FILE).touch()
        calls.append(fd)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_removal)
    with writer_lock(root):
        monkeypatch.undo()
        assert len(calls) == 2
        fd = os.open(root / LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # the lock is on the file now in place
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


@pytest.fixture(scope="module")
def big_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalogue big enough that a hash-model CLI build takes about two seconds."""
    rng = random.Random(5)
    words = [f"w{i}" for i in range(5000)]
    path = tmp_path_factory.mktemp("big") / "items.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "kind"])
        for i in range(BIG_ITEMS):
            writer.writerow([f"i{i}", " ".join(rng.choices(words, k=12)), rng.choice("ABCD")])
    return path


def big_build_args(catalog: Path, *extra: str) -> list[str]:
    return [
        "index", "build", str(catalog), "--name", "big", "--model", "hash:64",
        "--text", "{title}", "--factory", "Flat", "--quiet", *extra,
    ]  # fmt: skip


def test_concurrent_cli_build_is_refused_then_the_lock_frees(
    tmp_path: Path, big_catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    indexes = tmp_path / "idx"
    root = indexes / "big"
    proc = vecrec_process(indexes, *big_build_args(big_catalog, "--no-cache"))
    try:
        # The holder writes its pid into the lock file once it holds the lock.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            lock = root / LOCK_FILE
            if lock.is_file() and lock.read_text().strip() == str(proc.pid):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the build finished before the test could race it"
        code, _, err = cli(capsys, indexes, *big_build_args(big_catalog))
        assert code == 1
        assert f"index 'big' is locked: another writer (pid {proc.pid})" in err
        assert err.count("\n") == 1
    finally:
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    with writer_lock(root):  # released by the exit
        pass


# -- builds killed at random points -----------------------------------------------------------------


def assert_no_half_version(root: Path, previous: str) -> None:
    Bundle.load(root / previous, verify=True)
    current = current_version(root)
    assert current is not None
    assert Bundle.load(root, verify=True).path.name == current
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            Bundle.load(child, verify=True)  # every visible directory is a complete version
    with writer_lock(root):  # the kernel dropped the dead writer's lock
        pass


def kill_while_writing(proc: subprocess.Popen[str], root: Path, delay: float) -> bool:
    """Kill ``proc`` ``delay`` seconds after its temporary version directory appears; True if
    it was killed before finishing."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name.startswith(TMP_PREFIX) for p in root.iterdir()):
            time.sleep(delay)
            break
        time.sleep(0.002)
    killed = proc.poll() is None
    proc.kill()
    proc.communicate()
    return killed


def test_killed_builds_never_leave_a_visible_half_version(
    tmp_path: Path, big_catalog: Path
) -> None:
    indexes = tmp_path / "idx"
    root = indexes / "big"
    started = time.monotonic()
    proc = vecrec_process(indexes, *big_build_args(big_catalog, "--no-cache", "--json"))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    duration = time.monotonic() - started
    writing = json.loads(stdout)["seconds"]["write"]
    previous = current_version(root)
    assert previous is not None

    rng = random.Random(1234)
    killed = {"anywhere": 0, "writing": 0}
    # The builds share one cache, so kills also land inside its transactions.
    cache_args = ("--cache-dir", str(tmp_path / "cache"))
    for attempt in range(KILL_TRIES):
        proc = vecrec_process(indexes, *big_build_args(big_catalog, *cache_args))
        if attempt % 2:
            # Writing the version is a small part of a build: aim half of the kills at it.
            killed["writing"] += kill_while_writing(proc, root, rng.uniform(0, writing))
        else:
            try:
                proc.communicate(timeout=rng.uniform(0.1, 0.85) * duration)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                killed["anywhere"] += 1
            else:
                assert proc.returncode == 0
        assert_no_half_version(root, previous)
        previous = current_version(root) or previous
    assert killed["anywhere"] >= 2 and killed["writing"] >= 2, killed

    proc = vecrec_process(indexes, *big_build_args(big_catalog, *cache_args, "--json"))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert current_version(root) == Path(report["path"]).name
    assert not [p for p in root.iterdir() if p.name.startswith(TMP_PREFIX)]
    assert not [p for p in root.iterdir() if p.name.startswith(f"{CURRENT_FILE}.")]
    # Whatever the killed builds left in the cache, no vector is wrong.
    bundle = Bundle.load(root)
    expected = HashEmbedder(64).embed(bundle.items["text"].tolist())
    assert np.array_equal(bundle.vectors, expected)


# -- list, rollback, gc ----------------------------------------------------------------------------


def test_list_versions_in_creation_order(tmp_path: Path) -> None:
    root, names = four_versions(tmp_path)
    listed = list_versions(root)
    assert [v.version for v in listed] == names
    assert [v.item_count for v in listed] == [10, 20, 30, 40]
    assert [v.current for v in listed] == [False, False, False, True]
    assert all(v.model == "hash:32" and v.problem is None for v in listed)
    (summary,) = list_indexes(tmp_path / "idx")
    assert (summary.name, summary.current, summary.versions, summary.item_count) == (
        "m", names[-1], 4, 40
    )  # fmt: skip
    with pytest.raises(BundleNotFound):
        list_versions(tmp_path / "idx" / "nope")


def test_rollback_to_previous_and_to_a_named_version(tmp_path: Path) -> None:
    root, names = four_versions(tmp_path)
    result = rollback(root)
    assert (result.previous, result.current, result.changed) == (names[3], names[2], True)
    assert Bundle.load(root).manifest.item_count == 30
    assert rollback(root).current == names[1]  # "previous" is relative to the current one
    assert rollback(root, names[3]).current == names[3]  # forward again, by name
    again = rollback(root, names[3])
    assert not again.changed and current_version(root) == names[3]
    assert rollback(root, names[0]).current == names[0]
    with pytest.raises(InvalidArgument, match="oldest"):
        rollback(root)
    with pytest.raises(InvalidArgument, match="no version 'nope'"):
        rollback(root, "nope")
    with pytest.raises(InvalidArgument, match="one version of an index"):
        rollback(root / names[0])


def test_rollback_refuses_a_version_that_fails_verification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, names = four_versions(tmp_path)
    flip_byte(root / names[2] / VECTORS_FILE)
    with pytest.raises(BundleCorrupt, match=rf"refusing to roll back 'm' to {names[2]}.*checksum"):
        rollback(root)
    assert current_version(root) == names[3]
    code, _, err = cli(capsys, tmp_path / "idx", "index", "rollback", "m", "--to", names[2])
    assert code == 1
    assert err.startswith("vecrec: error: refusing to roll back") and err.count("\n") == 1
    assert current_version(root) == names[3]
    # An intact version is still reachable by name.
    assert rollback(root, names[1]).current == names[1]


def test_gc_keeps_the_newest_and_the_current_and_removes_stale_temporaries(
    tmp_path: Path,
) -> None:
    root, names = four_versions(tmp_path)
    rollback(root, names[0])
    dead = root / f"{TMP_PREFIX}20200101T000000Z-abcdef-999999999"
    (dead / "sub").mkdir(parents=True)
    live = root / f"{TMP_PREFIX}20200101T000000Z-abcdef-{os.getppid()}"  # a running process
    live.mkdir()
    pointer = root / f"{CURRENT_FILE}.999999999.tmp"
    pointer.write_text("half")

    result = gc(root, keep=1)
    assert result.deleted == (names[1], names[2])
    assert result.kept == (names[0], names[3])
    assert set(result.temporaries) == {dead.name, pointer.name}
    assert not dead.exists() and not pointer.exists() and live.is_dir()
    assert [v.version for v in list_versions(root)] == [names[0], names[3]]
    assert Bundle.load(root).path.name == names[0]  # the current version survived
    assert not [p for p in root.iterdir() if p.name.startswith(f"{TMP_PREFIX}gc-")]

    assert gc(root, keep=5).deleted == ()
    rollback(root, names[3])
    assert gc(root, keep=1).deleted == (names[0],)
    assert [v.version for v in list_versions(root)] == [names[3]]
    with pytest.raises(InvalidArgument, match="keep"):
        gc(root, keep=0)


def test_cli_list_rollback_gc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, names = four_versions(tmp_path)
    indexes = tmp_path / "idx"

    code, out, _ = cli(capsys, indexes, "index", "list")
    assert code == 0
    assert out.split()[:3] == ["m", "current", names[3]] and "4 versions" in out
    code, out, _ = cli(capsys, indexes, "index", "list", "m")
    lines = out.splitlines()
    assert lines[0].split() == ["version", "created", "items", "model"]
    assert [line.split()[-4] for line in lines[1:]] == names
    assert lines[-1].startswith(f"* {names[3]}") and lines[1].startswith(f"  {names[0]}")
    code, out, _ = cli(capsys, indexes, "index", "list", "m", "--json")
    listed = json.loads(out)
    assert [v["item_count"] for v in listed] == [10, 20, 30, 40] and listed[3]["current"]

    code, out, _ = cli(capsys, indexes, "index", "rollback", "m")
    assert code == 0 and out.strip() == f"m: current version is now {names[2]} (was {names[3]})"
    code, out, _ = cli(capsys, indexes, "index", "rollback", str(indexes / "m"), "--json")
    assert json.loads(out) == {
        "name": "m", "previous": names[2], "current": names[1], "changed": True
    }  # fmt: skip

    code, out, _ = cli(capsys, indexes, "index", "gc", "m", "--keep", "2", "--json")
    assert code == 0
    assert json.loads(out) == {
        "name": "m", "deleted": [names[0]], "kept": names[1:], "temporaries": []
    }  # fmt: skip
    code, out, _ = cli(capsys, indexes, "index", "gc", "m", "--keep", "1")
    assert out.splitlines() == [
        "m: deleted 1 version, kept 2, removed 0 stale temporaries",
        f"deleted    {names[2]}",
    ]
    code, _, err = cli(capsys, indexes, "index", "rollback", "missing")
    assert code == 1 and err.startswith("vecrec: error: no index at") and err.count("\n") == 1


def test_cli_build_reports_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = small_config(tmp_path, 30)
    args = [
        "index", "build", str(config.catalog.path), "--name", "c", "--id-column", "movieId",
        "--model", "hash:32", "--quiet",
    ]  # fmt: skip
    indexes = tmp_path / "cli-idx"
    assert cli(capsys, indexes, *args)[0] == 0
    code, out, _ = cli(capsys, indexes, *args, "--no-cache")
    assert code == 0 and "from the cache" not in out
    code, out, _ = cli(capsys, indexes, *args)
    assert code == 0 and "30 of 30 texts from the cache" in out
    assert len(list_versions(indexes / "c")) == 3
    # The lock and the cache live in hidden entries, never taken for versions or indexes.
    assert (indexes / "c" / LOCK_FILE).is_file() and (indexes / ".cache").is_dir()
    assert [i.name for i in list_indexes(indexes)] == ["c"]
