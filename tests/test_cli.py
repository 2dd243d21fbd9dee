"""The ``vecrec`` command line, run as a real subprocess with the deterministic hash embedder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
NAME = "good"
MODEL = "hash:64"
TEMPLATE = "{title}. Genres: {genres}. Year: {year}."
GENRES = ["A", "B", "A|B", "C"]
N_ITEMS = 60


def vecrec_command() -> list[str]:
    script = Path(sys.executable).parent / "vecrec"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "api.cli"]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECREC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def vecrec(indexes_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*vecrec_command(), "--indexes-dir", str(indexes_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        cwd=indexes_dir.parent,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def one_line_error(
    result: subprocess.CompletedProcess[str], *needles: str, prefix: str = "vecrec: error:"
) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(prefix), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# -- fixtures ------------------------------------------------------------------------------------


def catalogue_rows() -> list[dict[str, Any]]:
    return [
        {
            "id": str(i),
            "title": f"Film number {i}",
            "genres": GENRES[i % len(GENRES)],
            "year": 1970 + i,
        }
        for i in range(1, N_ITEMS + 1)
    ]


def write_catalogue(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def interaction_rows() -> list[tuple[str, str]]:
    # User u saw items 1..10-u: item i is seen by 11-i users (item 1 by all ten).
    rows = [(f"u{u}", str(i)) for u in range(10) for i in range(1, 11 - u)]
    rows += [("u0", "10")] * 20  # repeats by one user count once
    rows += [("u3", "999")]  # an item not in the catalogue
    return rows


@dataclass(frozen=True)
class Built:
    indexes_dir: Path
    catalogue: Path
    interactions: Path
    items: dict[str, dict[str, Any]]
    popularity: dict[str, int]
    build_stdout: str

    @property
    def root(self) -> Path:
        return self.indexes_dir / NAME

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return vecrec(self.indexes_dir, *args)

    def copy_to(self, directory: Path) -> Path:
        """A private copy of the indexes directory, for tests that damage or rebuild it."""
        target = directory / "indexes"
        shutil.copytree(self.indexes_dir, target)
        return target


def build_args(
    catalogue: Path, interactions: Path | None, *extra: str, name: str = NAME
) -> list[str]:
    args = [
        "index",
        "build",
        str(catalogue),
        "--name",
        name,
        "--model",
        MODEL,
        "--text",
        TEMPLATE,
        "--list-column",
        "genres=|",
        "--quiet",
        *extra,
    ]
    if interactions is not None:
        args += ["--interactions", str(interactions)]
    return args


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("cli")
    rows = catalogue_rows()
    catalogue = write_catalogue(work / "movies.csv", rows)
    interactions = work / "interactions.csv"
    pairs = interaction_rows()
    with interactions.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id"])
        writer.writerows(pairs)
    popularity = {row["id"]: len({u for u, i in set(pairs) if i == row["id"]}) for row in rows}
    indexes_dir = work / "indexes"
    result = vecrec(indexes_dir, *build_args(catalogue, interactions))
    stdout = ok(result)
    items = {row["id"]: {**row, "genres": row["genres"].split("|")} for row in rows}
    return Built(indexes_dir, catalogue, interactions, items, popularity, stdout)


def composed_text(item: dict[str, Any]) -> str:
    return TEMPLATE.format(title=item["title"], genres=", ".join(item["genres"]), year=item["year"])


def version_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


# -- building and inspecting -------------------------------------------------------------------


def test_build_prints_summary_and_writes_one_version(built: Built) -> None:
    out = built.build_stdout
    assert f"index      {NAME}" in out
    assert f"items      {N_ITEMS}" in out
    assert MODEL in out
    assert "index      Flat  (auto)" in out
    assert "metadata   title, genres, year + popularity" in out
    assert "built in" in out
    current = (built.root / "CURRENT").read_text(encoding="utf-8").strip()
    assert version_dirs(built.root) == [current]
    assert (built.root / current / "manifest.json").is_file()
    assert f"version {current}" in out
    assert not [p for p in built.root.iterdir() if p.name.startswith(".tmp-")]


def test_index_info_verifies_checksums(built: Built) -> None:
    out = ok(built.run("index", "info", NAME))
    assert "checksums  ok" in out
    assert f"items      {N_ITEMS}" in out
    for name in ("index.faiss", "items.parquet", "vectors.npy"):
        assert name in out


def test_index_info_json(built: Built) -> None:
    manifest = as_json(built.run("index", "info", NAME, "--json"))
    assert manifest["item_count"] == N_ITEMS
    assert manifest["name"] == NAME
    assert manifest["version"] == (built.root / "CURRENT").read_text(encoding="utf-8").strip()
    assert manifest["model"]["spec"] == MODEL
    assert manifest["model"]["dimension"] == 64
    assert manifest["has_popularity"] is True
    assert manifest["list_columns"] == ["genres"]
    assert manifest["text_template"] == TEMPLATE
    # Built with --interactions: collaborative vectors and their index too (issue 9).
    assert set(manifest["files"]) == {
        "index.faiss", "items.parquet", "vectors.npy", "cf_vectors.npy", "cf_index.faiss"
    }  # fmt: skip
    assert set(manifest["extras"]) == {"collaborative"}


# -- queries -------------------------------------------------------------------------------------


def check_items(built: Built, items: list[dict[str, Any]]) -> None:
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids))
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    for item in items:
        expected = built.items[item["id"]]
        assert item["text"] == composed_text(expected)
        assert item["metadata"]["genres"] == expected["genres"]
        assert item["metadata"]["year"] == expected["year"]


def test_recommend_from_history(built: Built) -> None:
    answer = as_json(
        built.run("recommend", "--index", NAME, "--history", "1:5,2:4", "-k", "5", "--json")
    )
    assert answer["source"] == "history"
    assert answer["unknown_ids"] == []
    assert len(answer["items"]) == 5
    assert not {"1", "2"} & {item["id"] for item in answer["items"]}
    check_items(built, answer["items"])


def test_recommend_text_output(built: Built) -> None:
    out = ok(built.run("recommend", "--index", NAME, "--history", "1:5,2:4", "-k", "3"))
    lines = out.strip().splitlines()
    assert "(from history)" in lines[0]
    assert len(lines) == 4
    assert all("Film number" in line for line in lines[1:])


def test_exclude_is_respected(built: Built) -> None:
    exclude = [str(i) for i in range(3, 40)]
    answer = as_json(
        built.run(
            "recommend",
            "--index",
            NAME,
            "--history",
            "1:5",
            "--exclude",
            ",".join(exclude),
            "-k",
            str(N_ITEMS),
            "--json",
        )
    )
    assert {item["id"] for item in answer["items"]} == set(built.items) - set(exclude) - {"1"}


def _genres(item: dict[str, Any]) -> list[str]:
    return item["genres"]


FILTER_CASES: list[tuple[list[str], Callable[[dict[str, Any]], bool]]] = [
    (["genres=A"], lambda it: "A" in _genres(it)),
    (["year>=2000"], lambda it: it["year"] >= 2000),
    (['{"field": "genres", "any": ["B", "C"]}'], lambda it: bool({"B", "C"} & set(_genres(it)))),
    (['{"field": "year", "lt": 1990}'], lambda it: it["year"] < 1990),
    (["genres=A", "year<1990"], lambda it: "A" in _genres(it) and it["year"] < 1990),
    (
        ["genres=C,B", "year>2020"],
        lambda it: bool({"B", "C"} & set(_genres(it))) and it["year"] > 2020,
    ),
]


@pytest.mark.parametrize(
    ("filters", "keep"), FILTER_CASES, ids=[" & ".join(f) for f, _ in FILTER_CASES]
)
def test_recommend_filters(
    built: Built, filters: list[str], keep: Callable[[dict[str, Any]], bool]
) -> None:
    args = ["recommend", "--index", NAME, "--history", "1:5,2:4", "-k", str(N_ITEMS), "--json"]
    for f in filters:
        args += ["--filter", f]
    answer = as_json(built.run(*args))
    expected = {i for i, item in built.items.items() if keep(item)} - {"1", "2"}
    assert 0 < len(expected) < N_ITEMS - 2  # the filter does select
    # Exactly min(k, eligible) items: every eligible item, nothing else.
    assert {item["id"] for item in answer["items"]} == expected
    check_items(built, answer["items"])


def test_similar(built: Built) -> None:
    answer = as_json(built.run("similar", "--index", NAME, "3", "-k", "5", "--json"))
    assert answer["source"] == "item"
    assert len(answer["items"]) == 5
    assert "3" not in {item["id"] for item in answer["items"]}
    check_items(built, answer["items"])
    # A filter applies, and --index may be a path to the index directory.
    answer = as_json(
        built.run(
            "similar", "--index", str(built.root), "3", "-k", "5", "--filter", "genres=C", "--json"
        )
    )
    assert answer["items"]
    assert all("C" in item["metadata"]["genres"] for item in answer["items"])


def test_search_finds_an_item_by_its_own_text(built: Built) -> None:
    target = built.items["7"]
    answer = as_json(
        built.run("search", "--index", NAME, composed_text(target), "-k", "3", "--json")
    )
    assert answer["source"] == "text"
    assert len(answer["items"]) == 3
    assert answer["items"][0]["id"] == "7"
    check_items(built, answer["items"])


def test_unknown_history_falls_back_to_popularity(built: Built) -> None:
    answer = as_json(
        built.run("recommend", "--index", NAME, "--history", "nope:5", "-k", "5", "--json")
    )
    assert answer["source"] == "popularity"
    assert answer["unknown_ids"] == ["nope"]
    ranked = sorted(built.popularity, key=lambda i: -built.popularity[i])
    assert [item["id"] for item in answer["items"]] == ranked[:5]
    for item in answer["items"]:
        assert item["score"] == item["metadata"]["popularity"] == built.popularity[item["id"]]


def test_unknown_history_text_output_reports_skipped_ids(built: Built) -> None:
    result = built.run("recommend", "--index", NAME, "--history", "nope,zilch", "-k", "2")
    out = ok(result)
    assert "(from popularity)" in out
    assert "skipped unknown ids: nope, zilch" in result.stderr


# -- errors --------------------------------------------------------------------------------------


def case_missing_id_column(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    path = tmp / "noid.csv"
    path.write_text("movieId,title,genres,year\n1,X,A,2000\n", encoding="utf-8")
    return build_args(path, None, name="other"), ["'id'", "movieId", "title"]


def case_duplicate_ids(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    rows = catalogue_rows()
    rows.append({**rows[4], "title": "A copy"})
    path = write_catalogue(tmp / "dup.csv", rows)
    return build_args(path, None, name="other"), ["duplicate", f"'{rows[4]['id']}'"]


def case_missing_catalogue(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return build_args(tmp / "absent.csv", None, name="other"), ["absent.csv", "no such file"]


def case_invalid_factory(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return build_args(built.catalogue, None, "--factory", "Bogus42", name="other"), [
        "Bogus42",
        "factory",
    ]


def case_invalid_name(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return build_args(built.catalogue, None, name="../escaped"), ["'../escaped'", "index name"]


def case_k_zero(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return ["recommend", "--index", NAME, "--history", "1", "-k", "0"], ["-k"]


def case_malformed_filter(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return ["recommend", "--index", NAME, "--history", "1", "--filter", "year~2000"], [
        "--filter",
        "year~2000",
    ]


def case_malformed_json_filter(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return ["recommend", "--index", NAME, "--history", "1", "--filter", '{"field": "year"'], [
        "--filter"
    ]


def case_unknown_filter_field(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return ["recommend", "--index", NAME, "--history", "1", "--filter", "budget>=3"], [
        "'budget'",
        "genres",
    ]


def case_not_a_bundle(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    empty = tmp / "not-a-bundle"
    empty.mkdir()
    return ["recommend", "--index", str(empty), "--history", "1"], ["not an index bundle"]


def case_no_such_index(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return ["similar", "--index", "missing-index", "1"], ["missing-index"]


def case_unknown_item(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return ["similar", "--index", NAME, "no-such-item"], ["'no-such-item'"]


def case_bad_history_weight(built: Built, tmp: Path) -> tuple[list[str], list[str]]:
    return ["recommend", "--index", NAME, "--history", "1:lots"], ["--history", "'1:lots'"]


ERROR_CASES = [
    case_missing_id_column,
    case_duplicate_ids,
    case_missing_catalogue,
    case_invalid_factory,
    case_invalid_name,
    case_malformed_filter,
    case_malformed_json_filter,
    case_unknown_filter_field,
    case_not_a_bundle,
    case_no_such_index,
    case_unknown_item,
    case_bad_history_weight,
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.__name__[5:] for c in ERROR_CASES])
def test_bad_input_is_one_line_error(
    built: Built, tmp_path: Path, case: Callable[[Built, Path], tuple[list[str], list[str]]]
) -> None:
    args, needles = case(built, tmp_path)
    indexes_dir = built.copy_to(tmp_path) if args[:2] == ["index", "build"] else built.indexes_dir
    before = sorted(p.relative_to(indexes_dir) for p in indexes_dir.rglob("*"))
    result = vecrec(indexes_dir, *args)
    assert result.returncode == 1
    one_line_error(result, *needles)
    # A failed command writes nothing under the indexes directory, nor beside it.
    assert sorted(p.relative_to(indexes_dir) for p in indexes_dir.rglob("*")) == before
    assert not (indexes_dir.parent / "escaped").exists()


def test_k_zero_is_an_argparse_error(built: Built) -> None:
    args, needles = case_k_zero(built, built.indexes_dir)
    result = built.run(*args)
    assert result.returncode == 2
    one_line_error(result, *needles, prefix="vecrec recommend: error:")


@pytest.mark.parametrize(
    "text", ['{"field": ["year"], "eq": 1}', '{"field": "year", "any": [{"a": 1}]}']
)
def test_json_filter_with_wrong_types_is_one_line_error(built: Built, text: str) -> None:
    result = built.run("recommend", "--index", NAME, "--history", "1", "--filter", text)
    one_line_error(result, "filter")


def test_hnsw_with_zero_links_is_one_line_error(built: Built, tmp_path: Path) -> None:
    result = vecrec(tmp_path / "indexes", *build_args(built.catalogue, None, "--factory", "HNSW0"))
    one_line_error(result, "HNSW0")


def test_tampered_vectors_fail_checksum(built: Built, tmp_path: Path) -> None:
    indexes_dir = built.copy_to(tmp_path)
    root = indexes_dir / NAME
    version = (root / "CURRENT").read_text(encoding="utf-8").strip()
    vectors = root / version / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0xFF
    vectors.write_bytes(bytes(data))
    for args in (
        ["index", "info", NAME],
        ["recommend", "--index", NAME, "--history", "1:5", "-k", "3"],
        ["similar", "--index", NAME, "1"],
    ):
        result = vecrec(indexes_dir, *args)
        assert result.returncode == 1
        one_line_error(result, "checksum", "vectors.npy")
        assert "checksums  ok" not in result.stdout


def test_failed_rebuild_leaves_the_index_untouched(built: Built, tmp_path: Path) -> None:
    indexes_dir = built.copy_to(tmp_path)
    root = indexes_dir / NAME
    current_before = (root / "CURRENT").read_bytes()
    listing_before = sorted(p.relative_to(root) for p in root.rglob("*"))
    manifest_before = (root / current_before.decode().strip() / "manifest.json").read_bytes()

    rows = catalogue_rows()
    rows.append(dict(rows[0]))
    duplicated = write_catalogue(tmp_path / "dup.csv", rows)
    failures = [
        build_args(duplicated, built.interactions),
        # Fails after embedding, at the FAISS stage.
        build_args(built.catalogue, built.interactions, "--factory", "IVF4096,Flat"),
    ]
    for args in failures:
        result = vecrec(indexes_dir, *args)
        assert result.returncode == 1
        one_line_error(result)

        assert (root / "CURRENT").read_bytes() == current_before
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == listing_before
        assert (root / current_before.decode().strip() / "manifest.json").read_bytes() == (
            manifest_before
        )
    out = ok(vecrec(indexes_dir, "index", "info", NAME))
    assert "checksums  ok" in out
    assert f"version {current_before.decode().strip()}" in out


def test_successful_rebuild_adds_a_version_and_keeps_the_old_one(
    built: Built, tmp_path: Path
) -> None:
    indexes_dir = built.copy_to(tmp_path)
    root = indexes_dir / NAME
    old = (root / "CURRENT").read_text(encoding="utf-8").strip()
    report = as_json(
        vecrec(indexes_dir, *build_args(built.catalogue, built.interactions, "--json"))
    )
    new = (root / "CURRENT").read_text(encoding="utf-8").strip()
    assert new != old
    assert Path(report["path"]).name == new
    assert report["manifest"]["version"] == new
    assert report["manifest"]["item_count"] == N_ITEMS
    assert version_dirs(root) == sorted([old, new])
    # The old version is still a complete, verifiable bundle.
    assert "checksums  ok" in ok(vecrec(indexes_dir, "index", "info", str(root / old)))
    assert f"version {new}" in ok(vecrec(indexes_dir, "index", "info", NAME))
