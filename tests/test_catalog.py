"""Unit tests of catalogue reading (engine/tables.py) and item-text composition (indexer/catalog.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from engine.errors import CatalogError
from engine.tables import TableFormat, read_table
from indexer.catalog import CatalogSpec, JoinSpec, load_catalog, render, template_fields

TEMPLATE = "{title}. Genres: {genres}.[ Year: {year}.]"

# One small catalogue, written in three formats. Ids are strings with leading zeros.
ROWS = [
    {"id": "001", "title": "Toy Story", "genres": "Animation|Children", "year": 1995},
    {"id": "002", "title": "Heat", "genres": "Action|Crime|Thriller", "year": 1995},
    {"id": "010", "title": "Amélie", "genres": "Comedy|Romance", "year": 2001},
    {"id": "123", "title": "Alien", "genres": "Horror|Sci-Fi", "year": 1979},
]


def write_csv(path: Path, rows: list[dict], *, sep: str = ",", encoding: str = "utf-8") -> Path:
    pd.DataFrame(rows).to_csv(path, index=False, sep=sep, encoding=encoding)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def catalog_error(spec: CatalogSpec) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        load_catalog(spec)
    return info.value


# -- render ------------------------------------------------------------------------------------


def test_template_fields_in_order_including_optional_parts() -> None:
    assert template_fields(TEMPLATE) == ["title", "genres", "year"]


def test_render_drops_optional_part_when_all_its_fields_are_empty() -> None:
    template = "{title}.[ Tags: {tags}.]"
    for empty in (None, "", "   ", [], float("nan")):
        assert render(template, {"title": "Heat", "tags": empty}) == "Heat."
    # A missing key is empty too.
    assert render(template, {"title": "Heat"}) == "Heat."


def test_render_keeps_optional_part_when_any_field_is_set() -> None:
    template = "{title}.[ Made by {director} in {country}.]"
    assert (
        render(template, {"title": "Heat", "director": "Mann", "country": ""})
        == "Heat. Made by Mann in ."
    )
    assert (
        render(template, {"title": "Heat", "director": "Mann", "country": "USA"})
        == "Heat. Made by Mann in USA."
    )
    assert render(template, {"title": "Heat", "director": None, "country": None}) == "Heat."


def test_render_joins_list_values_with_comma_space_skipping_blanks() -> None:
    text = render("{title}. Genres: {genres}.", {"title": "Toy", "genres": ["A", None, " ", "B"]})
    assert text == "Toy. Genres: A, B."
    assert render("{g}", {"g": ("x", "y", "z")}) == "x, y, z"


def test_render_prints_integral_floats_without_decimal_part() -> None:
    assert render("{title} ({year})", {"title": "Heat", "year": 1995.0}) == "Heat (1995)"
    assert render("{rating}", {"rating": 3.5}) == "3.5"
    assert render("{n}", {"n": 7}) == "7"


def test_render_collapses_whitespace() -> None:
    text = render("  {title}   by\t{who} [ {missing} ]  end ", {"title": " A\n B ", "who": "C  D"})
    assert text == "A B by C D end"
    assert "  " not in text


def test_render_rejects_format_specs() -> None:
    with pytest.raises(CatalogError) as info:
        render("{year:>10}", {"year": 1995})
    assert info.value.field == "text"


# -- formats -----------------------------------------------------------------------------------


@pytest.fixture
def three_formats(tmp_path: Path) -> dict[str, Path]:
    return {
        "csv": write_csv(tmp_path / "items.csv", ROWS),
        "jsonl": write_jsonl(tmp_path / "items.jsonl", ROWS),
        "parquet": write_parquet(tmp_path / "items.parquet", ROWS),
    }


def test_csv_jsonl_and_parquet_give_identical_items(three_formats: dict[str, Path]) -> None:
    loaded = {
        kind: load_catalog(CatalogSpec(path, text_template=TEMPLATE, list_columns={"genres": "|"}))
        for kind, path in three_formats.items()
    }
    reference = loaded["csv"]
    assert reference.ids == [r["id"] for r in ROWS]
    assert reference.texts[0] == "Toy Story. Genres: Animation, Children. Year: 1995."
    assert reference.texts[2] == "Amélie. Genres: Comedy, Romance. Year: 2001."
    for kind, catalog in loaded.items():
        assert catalog.ids == reference.ids, kind
        assert catalog.texts == reference.texts, kind
        assert all(isinstance(i, str) for i in catalog.ids), kind
        assert catalog.metadata_columns == ("title", "genres", "year"), kind
        assert catalog.list_columns == ("genres",), kind
        assert catalog.table["genres"].tolist() == [r["genres"].split("|") for r in ROWS], kind


def test_csv_string_ids_keep_leading_zeros(tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv"
    path.write_text("id,title\n007,Bond\n0042,Answer\n42,Other\n", encoding="utf-8")
    catalog = load_catalog(CatalogSpec(path, text_template="{title}"))
    assert catalog.ids == ["007", "0042", "42"]
    # "0042" and "42" are different ids: not a duplicate.
    assert len(set(catalog.ids)) == 3


def test_numeric_ids_become_strings_without_decimal_part(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "num.jsonl", [{"id": 5, "t": "a"}, {"id": 12, "t": "b"}])
    catalog = load_catalog(CatalogSpec(path, text_template="{t}"))
    assert catalog.ids == ["5", "12"]
    assert catalog.table["id"].map(type).eq(str).all()


def test_missing_year_in_csv_renders_other_years_without_decimal_part(tmp_path: Path) -> None:
    # An empty cell makes pandas read the whole column as float: 1995 -> 1995.0.
    path = tmp_path / "years.csv"
    path.write_text("id,title,year\n1,Toy,1995\n2,Heat,\n", encoding="utf-8")
    catalog = load_catalog(CatalogSpec(path, text_template="{title}[ ({year})]"))
    assert catalog.texts == ["Toy (1995)", "Heat"]


def test_parquet_native_list_column_renders_like_jsonl_list(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "title": "Toy", "genres": ["Animation", "Children"]},
        {"id": "2", "title": "Heat", "genres": ["Action"]},
    ]
    template = "{title}. Genres: {genres}."
    from_jsonl = load_catalog(
        CatalogSpec(write_jsonl(tmp_path / "l.jsonl", rows), text_template=template)
    )
    from_parquet = load_catalog(
        CatalogSpec(write_parquet(tmp_path / "l.parquet", rows), text_template=template)
    )
    assert from_jsonl.texts == ["Toy. Genres: Animation, Children.", "Heat. Genres: Action."]
    assert from_parquet.texts == from_jsonl.texts


def test_list_columns_are_split_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "movies.csv"
    path.write_text(
        "id,title,genres\n1,Toy,Animation|Children\n2,Heat, Action | Crime |\n3,Void,\n",
        encoding="utf-8",
    )
    catalog = load_catalog(
        CatalogSpec(path, text_template="{title}[ ({genres})]", list_columns={"genres": "|"})
    )
    assert catalog.table["genres"].tolist() == [["Animation", "Children"], ["Action", "Crime"], []]
    assert catalog.texts == ["Toy (Animation, Children)", "Heat (Action, Crime)", "Void"]
    assert catalog.list_columns == ("genres",)


def test_list_column_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ROWS)
    error = catalog_error(CatalogSpec(path, list_columns={"tags": "|"}))
    assert error.field == "list_column"
    assert "'tags'" in error.message


# -- joins -------------------------------------------------------------------------------------


@pytest.fixture
def tagged(tmp_path: Path) -> tuple[Path, Path]:
    catalog = tmp_path / "movies.csv"
    catalog.write_text("movieId,title\n1,Toy Story\n2,Heat\n3,Alien\n", encoding="utf-8")
    tags = tmp_path / "tags.csv"
    tags.write_text(
        "userId,movieId,tag\n"
        "10,1,pixar\n"
        "11,1,Funny\n"
        "12,1,FUNNY\n"
        "13,1,funny\n"
        "14,1,Pixar\n"
        "15,1,kids\n"
        "16,1,\n"
        "17,2,heist\n"
        "18,99,orphan tag\n",
        encoding="utf-8",
    )
    return catalog, tags


def test_join_dedupes_case_insensitively_most_frequent_first(tagged: tuple[Path, Path]) -> None:
    catalog_path, tags_path = tagged
    join = JoinSpec("tags", tags_path, "movieId", "tag")
    catalog = load_catalog(
        CatalogSpec(
            catalog_path,
            id_column="movieId",
            text_template="{title}.[ Tags: {tags}.]",
            metadata_columns=("title", "tags"),
            joins=(join,),
        )
    )
    # funny x3 (first spelling "Funny" kept), pixar x2, kids x1; ties keep first appearance.
    assert catalog.table["tags"].tolist() == [["Funny", "pixar", "kids"], ["heist"], []]
    assert catalog.texts == [
        "Toy Story. Tags: Funny, pixar, kids.",
        "Heat. Tags: heist.",
        "Alien.",
    ]
    assert "tags" in catalog.list_columns


def test_join_caps_values_at_max_values(tagged: tuple[Path, Path]) -> None:
    catalog_path, tags_path = tagged
    join = JoinSpec("tags", tags_path, "movieId", "tag", max_values=2)
    catalog = load_catalog(
        CatalogSpec(
            catalog_path, id_column="movieId", text_template="{title}[ {tags}]", joins=(join,)
        )
    )
    assert catalog.texts[0] == "Toy Story Funny, pixar"


def test_join_parse() -> None:
    spec = JoinSpec.parse("tags=data/tags.csv:movieId:tag")
    assert (spec.name, spec.path, spec.key, spec.column) == (
        "tags",
        Path("data/tags.csv"),
        "movieId",
        "tag",
    )
    # The path may itself hold colons: only the last two separate key and column.
    assert JoinSpec.parse("t=C:/x/tags.csv:k:c").path == Path("C:/x/tags.csv")


@pytest.mark.parametrize(
    "text", ["tags", "tags=tags.csv", "tags=tags.csv:movieId", "=p:k:c", "1x=p:k:c"]
)
def test_join_parse_rejects_malformed_specs(text: str) -> None:
    with pytest.raises(CatalogError) as info:
        JoinSpec.parse(text)
    assert info.value.field == "join"
    assert "join" in info.value.message


def test_join_missing_column_and_name_clash(tagged: tuple[Path, Path]) -> None:
    catalog_path, tags_path = tagged
    error = catalog_error(
        CatalogSpec(
            catalog_path,
            id_column="movieId",
            joins=(JoinSpec("tags", tags_path, "movieId", "label"),),
        )
    )
    assert error.field == "join"
    assert "'label'" in error.message
    error = catalog_error(
        CatalogSpec(
            catalog_path,
            id_column="movieId",
            joins=(JoinSpec("title", tags_path, "movieId", "tag"),),
        )
    )
    assert error.field == "join"
    assert "'title'" in error.message


# -- delimiters and encodings ------------------------------------------------------------------


def test_pipe_separated_latin1_csv(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("id|title|note\n1|Amélie|Café, crème\n2|Ça ira|naïve\n".encode("latin-1"))
    fmt = TableFormat(delimiter="|", encoding="latin-1")
    catalog = load_catalog(CatalogSpec(path, text_template="{title}: {note}", table_format=fmt))
    assert catalog.ids == ["1", "2"]
    assert catalog.texts == ["Amélie: Café, crème", "Ça ira: naïve"]
    assert catalog.table["title"].tolist() == ["Amélie", "Ça ira"]


def test_latin1_csv_read_as_utf8_is_an_encoding_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("id|title\n1|Amélie\n".encode("latin-1"))
    error = catalog_error(CatalogSpec(path, table_format=TableFormat(delimiter="|")))
    assert error.field == "encoding"
    assert "utf-8" in error.message
    assert "--encoding" in error.message


def test_unknown_encoding_is_an_encoding_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ROWS)
    error = catalog_error(CatalogSpec(path, table_format=TableFormat(encoding="no-such-codec")))
    assert error.field == "encoding"
    assert "no-such-codec" in error.message


def test_tsv_suffix_means_tab_separated(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.tsv", ROWS, sep="\t")
    frame = read_table(path, string_columns=["id"])
    assert list(frame.columns) == ["id", "title", "genres", "year"]
    assert frame["id"].tolist() == ["001", "002", "010", "123"]


def test_unknown_suffix_asks_for_format(tmp_path: Path) -> None:
    path = tmp_path / "items.xlsx"
    path.write_text("id,title\n1,a\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        read_table(path)
    assert info.value.field == "format"
    assert "--format" in info.value.message
    # With the format given explicitly the same file reads.
    assert read_table(path, TableFormat(format="csv"))["title"].tolist() == ["a"]


# -- errors ------------------------------------------------------------------------------------


def test_missing_id_column_names_it_and_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "movies.csv"
    path.write_text("movieId,title,genres\n1,Toy,A\n", encoding="utf-8")
    error = catalog_error(CatalogSpec(path))
    assert error.field == "id_column"
    assert "'id'" in error.message
    for column in ("movieId", "title", "genres"):
        assert column in error.message


def test_duplicate_ids_are_named(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("id,title\n1,Toy\n2,Heat\n7,Alien\n2,Heat again\n", encoding="utf-8")
    error = catalog_error(CatalogSpec(path))
    assert error.field == "id_column"
    assert "duplicate" in error.message
    assert "'2'" in error.message
    assert "'1'" not in error.message and "'7'" not in error.message


def test_rows_without_id_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "noid.csv"
    path.write_text("id,title\n1,Toy\n,Heat\n", encoding="utf-8")
    error = catalog_error(CatalogSpec(path))
    assert error.field == "id_column"
    assert "no 'id'" in error.message


def test_item_with_all_template_fields_empty_is_named(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("id,title,tags\n1,Toy,kids\n2,,\n3,Heat,\n", encoding="utf-8")
    error = catalog_error(CatalogSpec(path, text_template="Movie: {title}.[ Tags: {tags}.]"))
    assert error.field == "text"
    assert "empty text" in error.message
    assert "'2'" in error.message
    assert "'3'" not in error.message


def test_missing_file(tmp_path: Path) -> None:
    error = catalog_error(CatalogSpec(tmp_path / "nope.csv"))
    assert error.field == "path"
    assert "nope.csv" in error.message
    assert "no such file" in error.message


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "random.parquet"
    path.write_bytes(os.urandom(512))
    error = catalog_error(CatalogSpec(path))
    assert error.field == "path"
    assert "random.parquet" in error.message
    assert "parquet" in error.message.replace("random.parquet", "")
    assert "\n" not in error.message


def test_unknown_template_field(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ROWS)
    error = catalog_error(CatalogSpec(path, text_template="{title} by {director}"))
    assert error.field == "text"
    assert "{director}" in error.message
    assert "title" in error.message


@pytest.mark.parametrize("reserved", ["text", "id", "popularity"])
def test_reserved_metadata_column(tmp_path: Path, reserved: str) -> None:
    path = write_csv(tmp_path / "c.csv", ROWS)
    error = catalog_error(CatalogSpec(path, metadata_columns=("title", reserved)))
    assert error.field == "metadata"
    assert f"'{reserved}'" in error.message
    assert "reserved" in error.message


def test_unknown_metadata_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ROWS)
    error = catalog_error(CatalogSpec(path, metadata_columns=("title", "budget")))
    assert error.field == "metadata"
    assert "'budget'" in error.message


def test_reserved_catalogue_columns_are_not_metadata_by_default(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,title,popularity\n1,Toy,5\n2,Heat,3\n", encoding="utf-8")
    catalog = load_catalog(CatalogSpec(path, text_template="{title}"))
    assert catalog.metadata_columns == ("title",)
    assert list(catalog.table.columns) == ["id", "text", "title"]


@pytest.mark.parametrize(
    ("name", "content"),
    [("header-only.csv", "id,title\n"), ("blank.csv", ""), ("empty.jsonl", "")],
)
def test_empty_catalogue(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    error = catalog_error(CatalogSpec(path))
    assert error.field == "path"
    assert name in error.message
