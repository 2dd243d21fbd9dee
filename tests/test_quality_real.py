"""Recommendation quality with the real all-MiniLM-L6-v2 on the 1,000 most-rated movies.

Assertions are on genres and ids a person would expect, never on exact scores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Filter, HistoryEvent, Recommender
from tests.conftest import MemoEmbedder

pytestmark = pytest.mark.slow

TOY_STORY, TOY_STORY_2, TOY_STORY_3 = "1", "3114", "78499"
STAR_WARS_IV, EMPIRE, JEDI = "260", "1196", "1210"
TERMINATOR, TERMINATOR_2 = "1240", "589"
SHREK, SHREK_2 = "4306", "8360"
# Toy Story, The Lion King, Aladdin, Beauty and the Beast, Finding Nemo, Monsters, Inc.
ANIMATED_FAMILY = ["1", "364", "588", "595", "6377", "4886"]


@pytest.fixture(scope="module")
def rec(real_index: Path, minilm: MemoEmbedder) -> Recommender:
    return Recommender.open(real_index, embedder=minilm)


def _genres(rec: Recommender, ids: list[str]) -> list[set[str]]:
    return [set(rec.get(i).metadata["genres"]) for i in ids]


def test_animated_family_history_gets_animation_and_children(rec: Recommender) -> None:
    results = rec.recommend([HistoryEvent(i, 5.0) for i in ANIMATED_FAMILY], k=10)
    assert results.source == "history" and len(results.items) == 10
    assert not set(results.ids) & set(ANIMATED_FAMILY), "seen items never come back"
    family = sum(bool(g & {"Animation", "Children"}) for g in _genres(rec, results.ids))
    assert family >= 8, f"only {family}/10 animation/children films"


def test_space_adventure_interest_finds_science_fiction(rec: Recommender) -> None:
    results = rec.recommend([], interests="space adventure", k=10)
    assert results.source == "interests"
    scifi = sum("Sci-Fi" in g for g in _genres(rec, results.ids))
    assert scifi >= 7, f"only {scifi}/10 science fiction films"


def test_search_is_the_same_query_path(rec: Recommender) -> None:
    assert (
        rec.search("space adventure", k=10).ids
        == rec.recommend([], interests="space adventure", k=10).ids
    )


@pytest.mark.parametrize(
    ("item", "kin"),
    [
        (TOY_STORY, {TOY_STORY_2, TOY_STORY_3}),
        (STAR_WARS_IV, {EMPIRE, JEDI}),
        (TERMINATOR_2, {TERMINATOR}),
        (SHREK, {SHREK_2}),
    ],
)
def test_similar_finds_sequels(rec: Recommender, item: str, kin: set[str]) -> None:
    top = rec.similar(item, k=3).ids
    assert kin & set(top), f"{kin} not in top 3 of similar({item}): {top}"


def test_dislike_steers_away(rec: Recommender) -> None:
    liked = [HistoryEvent(STAR_WARS_IV, 5.0)]
    plain = rec.recommend(liked, k=20)
    steered = rec.recommend([*liked, HistoryEvent(TERMINATOR_2, -5.0)], k=20)
    assert TERMINATOR not in steered.ids or steered.ids.index(TERMINATOR) > (
        plain.ids.index(TERMINATOR) if TERMINATOR in plain.ids else -1
    )
    disliked_vec = rec.bundle.vectors[rec.bundle.row_of[TERMINATOR_2]]

    def mean_sim(ids):
        return sum(
            float(rec.bundle.vectors[rec.bundle.row_of[i]] @ disliked_vec) for i in ids
        ) / len(ids)

    assert mean_sim(steered.ids) < mean_sim(plain.ids)


def test_history_and_interests_mix(rec: Recommender) -> None:
    results = rec.recommend(
        [HistoryEvent(i, 5.0) for i in ANIMATED_FAMILY], interests="space adventure", k=10
    )
    assert results.source == "history+interests"
    genres = _genres(rec, results.ids)
    assert sum("Sci-Fi" in g for g in genres) >= 2
    assert sum(bool(g & {"Animation", "Children"}) for g in genres) >= 2


def test_filters_with_real_queries(rec: Recommender) -> None:
    results = rec.recommend(
        [HistoryEvent(i, 5.0) for i in ANIMATED_FAMILY],
        k=10,
        filters=[Filter("genres", eq="Sci-Fi")],
    )
    assert len(results.items) == 10
    assert all("Sci-Fi" in g for g in _genres(rec, results.ids))
