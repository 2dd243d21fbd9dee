"""The bundled sample catalogue: MovieLens ml-latest-small under ``examples/movielens``."""

from __future__ import annotations

from dataclasses import replace
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


def served_sample_config(indexes_dir: Path = Path("indexes")) -> BuildConfig:
    """What ``vecrec serve --sample`` builds: the sample with collaborative vectors (ALS on
    ratings >= 4, the setting chosen on the validation split) and BM25, so the main job answers
    in hybrid mode. Test fixtures use :func:`sample_config`, content plus popularity only."""
    config = sample_config(indexes_dir)
    assert config.interactions is not None
    return replace(
        config,
        interactions=replace(
            config.interactions, weight_column="rating", timestamp_column="timestamp"
        ),
        collaborative=True,
        cf_positive_threshold=4.0,
        lexical=True,
    )
