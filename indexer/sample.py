"""The bundled sample catalogue: MovieLens ml-latest-small under ``examples/movielens``."""

from __future__ import annotations

from pathlib import Path

from engine.interactions import InteractionsSpec
from indexer.build import BuildConfig
from indexer.catalog import CatalogSpec, JoinSpec

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "movielens"
SAMPLE_NAME = "movielens"
SAMPLE_TEMPLATE = "{title}. Genres: {genres}.[ Tags: {tags}.]"


def sample_config(indexes_dir: Path = Path("indexes"), *, name: str = SAMPLE_NAME) -> BuildConfig:
    """Build settings for the sample: titles, genres and user tags; popularity from ratings."""
    return BuildConfig(
        catalog=CatalogSpec(
            path=SAMPLE_DIR / "movies.csv",
            id_column="movieId",
            text_template=SAMPLE_TEMPLATE,
            metadata_columns=("title", "genres"),
            list_columns={"genres": "|"},
            joins=(JoinSpec("tags", SAMPLE_DIR / "tags.csv", "movieId", "tag"),),
        ),
        name=name,
        indexes_dir=indexes_dir,
        interactions=InteractionsSpec(
            SAMPLE_DIR / "ratings.csv", user_column="userId", item_column="movieId"
        ),
    )
