"""The Ray engine on a local two-CPU cluster: the same parts as the local engine, and
``index build --engine ray`` embeds the same vectors as a local build."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from engine import QueryOptions, Recommender
from engine.bulk import BulkRequest, UsersSpec, run_bulk
from engine.bundle import Bundle
from tests.test_bulk_cli import hash_users, read_parts

ray = pytest.importorskip("ray", reason="the Ray engine is the optional extra vecrec[ray]")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[None]:
    from engine.bulk.ray_job import start_ray

    start_ray(None, 2)
    yield
    ray.shutdown()


def test_ray_bulk_writes_the_local_engines_parts(
    local_cluster: None, hash_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.bulk.ray_job import run_bulk_ray

    users = hash_users(hash_index, tmp_path / "users.parquet", 450)
    request = BulkRequest(k=8, options=QueryOptions(strategy="multi_interest", explain=True))
    local = run_bulk(Recommender.open(hash_index), UsersSpec(users), tmp_path / "local", request,
                     chunk_size=100)  # fmt: skip
    on_ray = run_bulk_ray(
        hash_index, UsersSpec(users), tmp_path / "ray", request, chunk_size=100, workers=2
    )
    assert on_ray.parts_written == local.parts_written == 5
    assert on_ray.stats.users == 450 and on_ray.stats.rows == local.stats.rows
    pd.testing.assert_frame_equal(read_parts(tmp_path / "ray"), read_parts(tmp_path / "local"))
    assert not (tmp_path / "ray" / ".chunks").exists()
    # Resuming a finished Ray job from the command line starts no work.
    argv = ["bulk", "--index", str(hash_index), "--users", str(users), "--out",
            str(tmp_path / "ray"), "-k", "8", "--strategy", "multi_interest", "--explain",
            "--chunk-size", "100", "--engine", "ray", "--resume", "--quiet", "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parts_skipped"] == 5 and summary["parts_written"] == 0


def test_index_build_on_ray_embeds_like_a_local_build(
    local_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "items.csv"
    pd.DataFrame(
        {"id": [str(i) for i in range(57)], "title": [f"item number {i}" for i in range(57)]}
    ).to_csv(catalog, index=False)
    vectors = {}
    for engine in ("local", "ray"):
        argv = ["--indexes-dir", str(tmp_path / engine), "index", "build", str(catalog),
                "--name", "items", "--model", "hash:64", "--no-cache", "--quiet",
                "--engine", engine]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        bundle = Bundle.load(tmp_path / engine / "items")
        assert bundle.manifest.model.spec == "hash:64"
        vectors[engine] = np.asarray(bundle.vectors)
    np.testing.assert_array_equal(vectors["ray"], vectors["local"])
