"""Fuzzing: every endpoint against its OpenAPI schema (schemathesis, real uvicorn), and property
tests (hypothesis) on the catalogue readers and the request models. Bounded: a fixed number of
examples per operation, derandomised so CI runs the same cases every time."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.models import BatchRequest, RecommendRequest, SearchRequest
from engine import Bundle, HashEmbedder
from engine.errors import VecrecError
from engine.tables import TableFormat, read_table
from indexer.build import BuildConfig, build
from indexer.catalog import CatalogSpec
from tests.test_http import Server

KEY = "fuzz-admin-key"
EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_server(hash_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A copy: the fuzzer writes and deletes items through the admin routes.
    import shutil

    copy = tmp_path_factory.mktemp("fuzz") / "indexes" / "hashml"
    shutil.copytree(hash_index, copy)
    # Both keys set: schemathesis checks that every route declaring a key refuses calls without.
    with Server(
        copy, VECREC_API_KEY=KEY, VECREC_READ_API_KEY="fuzz-read-key", VECREC_AUTO_COMPACT="false"
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> object:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def test_every_endpoint_conforms_and_never_fails_with_5xx(api_schema: Any) -> None:
    """All of schemathesis' checks on every operation: no 5xx, status codes, content types,
    headers and bodies as the schema documents them, invalid input refused."""
    # schemathesis' own pytest plugin does not run under pytest 9; its strategies do.
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"},
                # A 422 also answers what a JSON schema cannot express (an unknown filter
                # field, k over the server's configured limit, an upsert with no text): by
                # design, so schema-valid input may be refused, always naming the field.
                excluded_checks=[positive_data_acceptance],
            )

        try:
            run()
        except BaseException as exc:  # collect all operations' failures, report them together
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def title_build(path: Path, indexes: Path, name: str) -> BuildConfig:
    """A Flat index of ``path``'s titles with the 16-d hash embedder, no cache, no progress."""
    return BuildConfig(
        catalog=CatalogSpec(path=path, text_template="{title}"),
        name=name,
        indexes_dir=indexes,
        model="hash:16",
        factory="Flat",
        progress=False,
        cache=False,
    )


# -- property tests ------------------------------------------------------------------------------

# Odd Unicode included: combining marks, right-to-left text, emoji, NUL and other controls.
text = st.text(
    alphabet=st.characters(codec="utf-8", categories=None, exclude_categories=("Cs",)), max_size=40
)
cell = st.one_of(text, st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.none())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(raw=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl", ".parquet", ".tsv"]))
def test_readers_never_raise_anything_but_a_catalog_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes, suffix: str
) -> None:
    path = tmp_path_factory.mktemp("raw") / f"catalog{suffix}"
    path.write_bytes(raw)
    with contextlib.suppress(VecrecError):
        read_table(path, TableFormat(), string_columns=["id"])


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.fixed_dictionaries({"id": st.one_of(text, st.integers(), st.none()), "title": cell}),
        max_size=6,
    ),
    form=st.sampled_from(["csv", "jsonl", "parquet"]),
)
def test_a_build_from_any_catalogue_succeeds_or_fails_cleanly_leaving_no_half_bundle(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, object]], form: str
) -> None:
    work = tmp_path_factory.mktemp("prop")
    frame = pd.DataFrame(rows, columns=["id", "title"])
    path = work / f"items.{form}"
    if form == "csv":
        frame.to_csv(path, index=False)
    elif form == "jsonl":
        path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows), encoding="utf-8")
    else:
        frame.astype({"id": "string", "title": "string"}).to_parquet(path)
    config = title_build(path, work / "indexes", "prop")
    try:
        report = build(config, HashEmbedder(16))
    except VecrecError:
        leftovers = list((work / "indexes").glob("prop/*")) if (work / "indexes").exists() else []
        assert [p.name for p in leftovers if not p.name.startswith(".lock")] == []
        return
    assert report.manifest.item_count == len(rows)


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
request_like = st.dictionaries(
    st.sampled_from(
        [
            "history",
            "interests",
            "k",
            "filters",
            "exclude",
            "text",
            "rerank",
            "strategy",
            "upsert",
            "delete",
            "explain",
            "exclude_seen",
            "max_interests",
        ]
    )
    | text,
    json_value,
    max_size=6,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(body=request_like)
def test_request_models_accept_or_refuse_any_json_without_crashing(body: dict[str, object]) -> None:
    for model in (RecommendRequest, SearchRequest, BatchRequest):
        try:
            model.model_validate(body)
        except ValidationError as exc:
            # Every refusal names where it is: the API turns this into a 422 naming the field.
            assert all(isinstance(e["loc"], tuple) for e in exc.errors())


def test_odd_unicode_round_trips_through_a_build(tmp_path: Path) -> None:
    odd = ["Amélie\u0301", "שלום (1999)", "🎬 Emoji", "Zero\u200bWidth", "Tab\tand\nnewline"]
    frame = pd.DataFrame({"id": [f"u{i}" for i in range(len(odd))], "title": odd})
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)
    config = title_build(path, tmp_path / "indexes", "odd")
    report = build(config, HashEmbedder(16))
    assert report.manifest.item_count == len(odd)
    texts = Bundle.load(report.path).items["text"].tolist()
    assert texts == [" ".join(t.split()) for t in odd]
