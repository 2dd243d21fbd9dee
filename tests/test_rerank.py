"""Re-ranking stages (engine/rerank.py, engine/ranking.py), explanations and the cross-encoder."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata

from engine import (
    Boost,
    Bundle,
    CrossEncoderReranker,
    Crowding,
    EmbedderError,
    HashEmbedder,
    HistoryEvent,
    InvalidArgument,
    QueryOptions,
    Recommender,
    RecommenderConfig,
    RerankConfig,
    Results,
)
from engine.ann import Searcher
from engine.embedder import default_model_path, normalize_rows
from engine.rerank import exact_rescore, mmr
from engine.strategies import STRATEGIES, Candidates
from indexer.faiss_build import build_faiss_index
from tests.conftest import MemoEmbedder


@pytest.fixture(scope="module")
def rec(hash_index: Path, hash_embedder: HashEmbedder) -> Recommender:
    return Recommender.open(hash_index, embedder=hash_embedder)


def _opts(strategy: str = "mean", **rerank: object) -> QueryOptions:
    """Options with an explicit strategy (the engine's default may change) and rerank stages."""
    return QueryOptions(strategy=strategy, rerank=RerankConfig(**rerank))  # type: ignore[arg-type]


def _vectors(rec: Recommender, ids: list[str]) -> np.ndarray:
    return np.asarray(rec.bundle.vectors[[rec.bundle.row_of[i] for i in ids]], dtype=np.float32)


def _diversity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance of unit rows."""
    sims = vectors @ vectors.T
    upper = np.triu_indices(len(vectors), 1)
    return float((1.0 - sims[upper]).mean())


def _random_histories(rec: Recommender, n: int, seed: int) -> list[list[HistoryEvent]]:
    rng = np.random.default_rng(seed)
    ids = rec.bundle.ids
    return [
        [HistoryEvent(str(i), float(rng.integers(1, 6))) for i in rng.choice(ids, size, False)]
        for size in rng.integers(1, 9, n)
    ]


# -- MMR ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(real_index: Path, minilm: MemoEmbedder) -> Recommender:
    return Recommender.open(real_index, embedder=minilm)


@pytest.mark.slow
def test_mmr_trades_relevance_for_diversity_on_real_vectors(real: Recommender) -> None:
    plain = real.search("space adventure", k=10)
    by_lambda = {
        lam: real.search("space adventure", k=10, options=_opts(mmr_lambda=lam))
        for lam in (1.0, 0.7, 0.3)
    }
    # λ = 1 is pure relevance: the same list, the same scores (up to float32 rounding: the
    # larger pool is one matrix-vector product of another shape).
    assert by_lambda[1.0].ids == plain.ids
    assert [i.score for i in by_lambda[1.0].items] == pytest.approx(
        [i.score for i in plain.items], abs=1e-6
    )
    diversity = {lam: _diversity(_vectors(real, r.ids)) for lam, r in by_lambda.items()}
    assert diversity[1.0] < diversity[0.7] < diversity[0.3], diversity
    # MMR keeps the single most relevant item first whatever λ.
    assert {r.ids[0] for r in by_lambda.values()} == {plain.ids[0]}


def test_mmr_on_hand_made_vectors() -> None:
    # A and A' are near duplicates (cosine 0.99); B is orthogonal to both and a bit less relevant.
    a = np.array([1.0, 0.0, 0.0])
    a2 = np.array([0.99, math.sqrt(1 - 0.99**2), 0.0])
    b = np.array([0.0, 0.0, 1.0])
    c = np.array([0.0, 1.0, 0.0])
    vectors = normalize_rows(np.stack([a, a2, b, c]))
    cands = Candidates(np.arange(4), np.array([0.9, 0.89, 0.8, 0.1], np.float32))
    assert mmr(cands, 4, 1.0, vectors).rows.tolist() == [0, 1, 2, 3]
    # λ = 0.5, second pick: A' scores 0.5·0.89 - 0.5·0.99 < 0 while B scores 0.5·0.8 - 0.
    # Third: C (0.05 - 0.5·cos(C, A') ≈ -0.02) beats A' (0.445 - 0.495 = -0.05).
    out = mmr(cands, 4, 0.5, vectors)
    assert out.rows.tolist()[:4] == [0, 2, 3, 1]
    # Scores stay the relevance the candidate came with.
    assert dict(zip(out.rows.tolist(), out.scores.tolist(), strict=True)) == pytest.approx(
        {0: 0.9, 1: 0.89, 2: 0.8, 3: 0.1}
    )

    # Many random candidates: λ = 0.3 picks a more diverse top 10 than λ = 1.
    rng = np.random.default_rng(5)
    centres = normalize_rows(rng.normal(size=(5, 16)))
    points = normalize_rows(np.repeat(centres, 12, axis=0) + rng.normal(0, 0.1, (60, 16)))
    query = normalize_rows(centres[0] + 0.3 * centres[1])[0]
    scores = points @ query
    order = np.argsort(-scores, kind="stable")
    cands = Candidates(order, scores[order].astype(np.float32), query)
    top = {lam: mmr(cands, 10, lam, points).rows[:10] for lam in (1.0, 0.7, 0.3)}
    assert all(len(rows) == 10 for rows in top.values())
    assert top[1.0].tolist() == order[:10].tolist()
    div = {lam: _diversity(points[rows]) for lam, rows in top.items()}
    assert div[1.0] - 1e-6 <= div[0.7] <= div[0.3] and div[1.0] < div[0.3] - 0.1, div


def assert_same_ranking(got: Results, want: Results) -> None:
    """The same items in the same order, but for float32 near-ties (|Δscore| < 1e-6), whose
    order may differ when the pools (and so the shapes of the score products) differ."""
    got_scores = [i.score for i in got.items]
    want_scores = [i.score for i in want.items]
    assert got_scores == pytest.approx(want_scores, abs=1e-6)
    for n, (a, b) in enumerate(zip(got.ids, want.ids, strict=True)):
        if a != b:
            tied = [m for m, s in enumerate(want_scores) if abs(s - want_scores[n]) < 1e-6]
            # An item missing from ``want`` tied with its last one, just past the cut.
            at_cut = a not in want.ids and abs(got_scores[n] - want_scores[-1]) < 1e-6
            assert len(tied) > 1 or at_cut, f"position {n}: {a} != {b}"


@pytest.mark.parametrize("strategy", ["mean", "best_score"])
def test_mmr_lambda_one_equals_no_mmr(rec: Recommender, strategy: str) -> None:
    for history in _random_histories(rec, 6, seed=11):
        plain = rec.recommend(history, k=10, options=QueryOptions(strategy=strategy))  # type: ignore[arg-type]
        lam1 = rec.recommend(
            history,
            k=10,
            options=QueryOptions(strategy=strategy, rerank=RerankConfig(mmr_lambda=1.0)),  # type: ignore[arg-type]
        )
        assert_same_ranking(lam1, plain)


def test_mmr_lambda_one_keeps_the_multi_interest_ranking(rec: Recommender) -> None:
    for history in _random_histories(rec, 6, seed=11):
        options = QueryOptions(strategy="multi_interest", max_interests=3)
        plain = rec.recommend(history, k=10, options=options)
        lam1 = rec.recommend(
            history,
            k=10,
            options=QueryOptions(
                strategy="multi_interest", max_interests=3, rerank=RerankConfig(mmr_lambda=1.0)
            ),
        )
        assert lam1.ids == plain.ids


# -- crowding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("mmr_lambda", [None, 0.5])
def test_crowding_cap_on_a_list_field_is_never_exceeded(
    rec: Recommender, strategy: str, mmr_lambda: float | None
) -> None:
    genres = {
        str(i): set(g) for i, g in zip(rec.bundle.ids, rec.bundle.items["genres"], strict=True)
    }
    for cap in (1, 2):
        options = _opts(strategy, crowding=Crowding("genres", cap), mmr_lambda=mmr_lambda)
        exceeded_without = 0
        for history in _random_histories(rec, 20, seed=cap):
            results = rec.recommend(history, k=10, options=options)
            counts = Counter(g for i in results.ids for g in genres[i])
            assert max(counts.values()) <= cap, counts
            assert 1 <= len(results.ids) <= 10 and len(set(results.ids)) == len(results.ids)
            assert not set(results.ids) & {e.item_id for e in history}
            if len(results.ids) < 10:
                # Greedy fill over the whole catalogue: a short list means no eligible item fits.
                seen = {e.item_id for e in history} | set(results.ids)
                for item_id, item_genres in genres.items():
                    if item_id not in seen:
                        assert any(counts[g] >= cap for g in item_genres), item_id
            if mmr_lambda is None and strategy != "multi_interest":
                scores = [item.score for item in results.items]
                assert scores == sorted(scores, reverse=True)
            plain = rec.recommend(history, k=10, options=_opts(strategy))
            plain_counts = Counter(g for i in plain.ids for g in genres[i])
            exceeded_without += max(plain_counts.values()) > cap
        # The cap is not vacuous: without crowding most of these lists break it.
        assert exceeded_without >= 15


@pytest.mark.parametrize("cap", [1, 2])
def test_crowding_cap_on_a_scalar_field_counts_equal_values(rec: Recommender, cap: int) -> None:
    popularity = dict(zip(rec.bundle.ids, rec.bundle.items["popularity"], strict=True))
    exceeded_without = 0
    for history in _random_histories(rec, 15, seed=40 + cap):
        results = rec.recommend(history, k=12, options=_opts(crowding=Crowding("popularity", cap)))
        counts = Counter(popularity[i] for i in results.ids)
        assert len(results.ids) == 12 and max(counts.values()) <= cap, counts
        plain = rec.recommend(history, k=12, options=_opts())
        exceeded_without += max(Counter(popularity[i] for i in plain.ids).values()) > cap
    if cap == 1:
        # Popularity is a small integer count with many ties: the cap of 1 is not vacuous.
        assert exceeded_without > 0


def test_the_popularity_fallback_honours_crowding(rec: Recommender) -> None:
    genres = {str(i): g for i, g in zip(rec.bundle.ids, rec.bundle.items["genres"], strict=True)}
    results = rec.recommend([], k=10, options=_opts(crowding=Crowding("genres", 1)))
    assert results.source == "popularity" and results.ids
    counts = Counter(g for i in results.ids for g in genres[i])
    assert max(counts.values()) <= 1, counts


@pytest.mark.parametrize(
    ("rerank", "field"),
    [
        (RerankConfig(boosts=(Boost("year", 1.0),)), "rerank.boosts"),
        (RerankConfig(crowding=Crowding("year", 1)), "rerank.crowding"),
        (RerankConfig(cross_encoder=True), "rerank.cross_encoder"),
    ],
)
def test_bad_rerank_options_are_refused_whatever_the_history(
    rec: Recommender, rerank: RerankConfig, field: str
) -> None:
    known = [HistoryEvent(str(rec.bundle.ids[0]))]
    for history in (known, [], [HistoryEvent("no-such-item")]):
        with pytest.raises(InvalidArgument) as info:
            rec.recommend(history, k=3, options=QueryOptions(rerank=rerank))
        assert info.value.field == field


def test_crowding_on_an_unknown_field_is_refused(rec: Recommender) -> None:
    with pytest.raises(InvalidArgument) as info:
        rec.search("toy", k=5, options=_opts(crowding=Crowding("year", 2)))
    assert info.value.field == "rerank.crowding"


# -- boosts -------------------------------------------------------------------------------------


def _ratios(rec: Recommender, item_id: str, config: RerankConfig, k: int = 15) -> np.ndarray:
    """boosted score / ((cosine + 1) / 2) for each result of similar(item_id), cosine recomputed."""
    results = rec.similar(item_id, k=k, options=QueryOptions(rerank=config))
    assert len(results.ids) == k
    cosine = _vectors(rec, results.ids) @ _vectors(rec, [item_id])[0]
    relevance = (cosine.astype(np.float64) + 1.0) / 2.0
    return np.array([i.score for i in results.items]) / relevance


def test_boosts_stay_within_their_bound(rec: Recommender) -> None:
    popularity = rec.bundle.items["popularity"].to_numpy(dtype=np.float64)
    percentile = dict(zip(rec.bundle.ids, rankdata(popularity) / len(popularity), strict=True))
    for item_id in rec.bundle.ids[:40:4]:
        config = RerankConfig(boosts=(Boost("popularity", 0.5),), max_boost=1.2)
        results = rec.similar(str(item_id), k=15, options=QueryOptions(rerank=config))
        ratios = _ratios(rec, str(item_id), config)
        assert np.all(ratios >= 1 - 1e-6) and np.all(ratios <= 1.2 + 1e-6), ratios
        # m = 1 + min(0.5 · percentile rank of popularity, 0.2)
        expected = [1 + min(0.5 * percentile[i], 0.2) for i in results.ids]
        assert ratios == pytest.approx(expected, rel=1e-5)
        scores = [i.score for i in results.items]
        assert scores == sorted(scores, reverse=True)


def test_a_huge_weight_cannot_lift_beyond_max_boost(rec: Recommender) -> None:
    item_id = str(rec.bundle.ids[7])
    config = RerankConfig(boosts=(Boost("popularity", 10.0),), max_boost=1.5)
    ratios = _ratios(rec, item_id, config, k=20)
    assert np.all(ratios <= 1.5 + 1e-6) and np.all(ratios >= 1 - 1e-6)
    assert ratios.max() == pytest.approx(1.5, rel=1e-6)  # the cap binds
    # Hence a result ranked above another is at least 1/max_boost as relevant.
    results = rec.similar(item_id, k=20, options=QueryOptions(rerank=config))
    relevance = (_vectors(rec, results.ids) @ _vectors(rec, [item_id])[0] + 1) / 2
    for above, below in itertools.combinations(range(20), 2):
        assert relevance[above] * 1.5 >= relevance[below] - 1e-6


def test_a_zero_weight_boost_changes_no_order(rec: Recommender) -> None:
    for item_id in map(str, rec.bundle.ids[100:110]):
        plain = rec.similar(item_id, k=10)
        zero = rec.similar(
            item_id, k=10, options=_opts(boosts=(Boost("popularity", 0.0, "minmax"),))
        )
        relevance = Results(
            tuple(dataclasses.replace(i, score=(i.score + 1) / 2) for i in plain.items), "item"
        )
        assert_same_ranking(zero, relevance)


@pytest.mark.parametrize("field", ["title", "genres", "year", "popularity "])
def test_a_boost_on_a_non_numeric_or_unknown_field_is_refused(rec: Recommender, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        rec.search("toy", k=5, options=_opts(boosts=(Boost(field, 1.0),)))
    assert info.value.field == "rerank.boosts" and repr(field) in str(info.value)


# -- exact re-scoring on approximate indexes ----------------------------------------------------


@pytest.fixture(scope="module")
def approximate(rec: Recommender) -> dict[str, object]:
    """IVF indexes with lossy codes over the hash bundle's vectors, by factory string."""
    vectors = np.asarray(rec.bundle.vectors, dtype=np.float32)
    return {f: build_faiss_index(vectors, f) for f in ("IVF8,SQ8", "IVF8,PQ8x4")}


@pytest.mark.parametrize("factory", ["IVF8,SQ8", "IVF8,PQ8x4"])
def test_exact_rescore_replaces_approximate_scores(
    rec: Recommender, approximate: dict[str, object], factory: str
) -> None:
    vectors = np.asarray(rec.bundle.vectors, dtype=np.float32)
    searcher = Searcher(approximate[factory], vectors, {"nprobe": 8})
    for row in (3, 50, 333):
        query = vectors[row]
        scores, rows = searcher.search(query[None, :], 40)
        found = Candidates(rows[0], scores[0], query)
        exact = vectors[found.rows] @ query  # the same product, in the candidates' order
        assert np.abs(found.scores - exact).max() > 1e-4, "the index's scores are approximate"
        out = exact_rescore(found, vectors)
        assert sorted(out.rows.tolist()) == sorted(found.rows.tolist())
        by_row = dict(zip(found.rows.tolist(), exact.tolist(), strict=True))
        assert out.scores.tolist() == [by_row[r] for r in out.rows.tolist()]
        assert np.all(np.diff(out.scores) <= 0)
        assert out.query is not None and np.array_equal(out.query, query)


def test_the_recommender_rescores_an_approximate_index_by_default(
    rec: Recommender, approximate: dict[str, object], hash_embedder: HashEmbedder
) -> None:
    bundle = rec.bundle
    vectors = np.asarray(bundle.vectors, dtype=np.float32)
    pq = Bundle(bundle.path, bundle.manifest, approximate["IVF8,PQ8x4"], vectors, bundle.items)
    approx = Recommender(pq, hash_embedder, RecommenderConfig(search_params={"nprobe": 8}))
    text = "toy story adventure"
    query = hash_embedder.embed([text])[0]
    # No filter and no exclusion: the IVF-PQ index answers (a filtered query may be scanned).
    exact = approx.search(text, k=10)
    cosine = _vectors(rec, exact.ids) @ query
    assert [i.score for i in exact.items] == pytest.approx(cosine.tolist(), abs=1e-6)
    assert np.all(np.diff(cosine) <= 1e-6)
    raw = approx.search(text, k=10, options=_opts(exact=False))
    raw_cosine = _vectors(rec, raw.ids) @ query
    assert np.abs(np.array([i.score for i in raw.items]) - raw_cosine).max() > 1e-3


# -- explanations -------------------------------------------------------------------------------


def _title(rec: Recommender, item_id: str) -> str:
    return str(rec.bundle.items["title"][rec.bundle.row_of[item_id]])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_explanations_name_liked_history_items(rec: Recommender, strategy: str) -> None:
    for history in _random_histories(rec, 5, seed=77):
        disliked = str(rec.bundle.ids[555])
        events = [*history, HistoryEvent(disliked, -4.0)]
        liked = {e.item_id for e in history}
        results = rec.recommend(
            events,
            k=10,
            options=QueryOptions(strategy=strategy, explain=True),  # type: ignore[arg-type]
        )
        assert len(results.items) == 10
        assert sum(bool(item.reasons) for item in results.items) >= 8
        for item in results.items:
            assert len(item.reasons) <= 2
            assert sum(r.share for r in item.reasons) <= 1 + 1e-6
            shares = [r.share for r in item.reasons]
            assert shares == sorted(shares, reverse=True)
            for reason in item.reasons:
                assert reason.kind == "item" and 0 < reason.share <= 1
                assert reason.item_id in liked, "a reason must be a liked history item"
                assert reason.label == _title(rec, reason.item_id)
                expected = float(_vectors(rec, [reason.item_id])[0] @ _vectors(rec, [item.id])[0])
                assert reason.similarity == pytest.approx(expected, abs=1e-5)
        plain = rec.recommend(events, k=10, options=QueryOptions(strategy=strategy))  # type: ignore[arg-type]
        assert plain.ids == results.ids and all(not i.reasons for i in plain.items)


def test_explanations_with_interests_only(rec: Recommender) -> None:
    results = rec.recommend(
        [], interests="space adventure", k=8, options=QueryOptions(strategy="mean", explain=True)
    )
    assert results.source == "interests" and len(results.items) == 8
    for item in results.items:
        # One source: its share of the pull is all of it (when it pulls at all).
        for reason in item.reasons:
            assert reason.kind == "interests" and reason.item_id is None and reason.label is None
            assert reason.share == pytest.approx(1.0)
    assert any(item.reasons for item in results.items)


def test_explanations_mix_history_and_interests(rec: Recommender) -> None:
    # One liked item of strength 1 and the interests (weight 1): two sources of equal weight,
    # so the top two reasons are all of them and their shares sum to 1.
    liked = str(rec.bundle.ids[0])
    results = rec.recommend(
        [HistoryEvent(liked, 1.0)],
        interests="toy story",
        k=10,
        options=QueryOptions(strategy="mean", explain=True),
    )
    both = 0
    for item in results.items:
        kinds = [r.kind for r in item.reasons]
        assert sorted(set(kinds)) == sorted(kinds) and set(kinds) <= {"item", "interests"}
        for reason in item.reasons:
            if reason.kind == "item":
                assert reason.item_id == liked and reason.label == _title(rec, liked)
        if len(kinds) == 2:
            both += 1
            assert sum(r.share for r in item.reasons) == pytest.approx(1.0)
    assert both >= 1


def test_scaling_all_ratings_changes_neither_ranking_nor_explanation(rec: Recommender) -> None:
    ids = [str(i) for i in rec.bundle.ids[10:14]]
    for strategy in STRATEGIES:
        answers = []
        for scale in (1.0, 5.0):
            history = [HistoryEvent(i, scale * w) for i, w in zip(ids, (1, 2, 1, 2), strict=True)]
            answers.append(
                rec.recommend(
                    history,
                    interests="space adventure",
                    k=10,
                    options=QueryOptions(strategy=strategy, explain=True),  # type: ignore[arg-type]
                )
            )
        low, high = answers
        assert low.ids == high.ids, "scaling the ratings must not change the ranking"
        for a, b in zip(low.items, high.items, strict=True):
            assert [(r.kind, r.item_id) for r in a.reasons] == [
                (r.kind, r.item_id) for r in b.reasons
            ]
            assert [r.share for r in a.reasons] == pytest.approx([r.share for r in b.reasons])


# -- cross-encoder ------------------------------------------------------------------------------


def make_tiny_cross_encoder(directory: Path) -> Path:
    """A 1-layer BERT sequence classifier with MiniLM's tokenizer, random but seeded weights."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(default_model_path()))
    torch.manual_seed(1234)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=0.2,  # the default 0.02 makes all scores equal to 5 decimals
    )
    config.num_labels = 1  # one relevance logit (CrossEncoder then applies a sigmoid)
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory: pytest.TempPathFactory) -> CrossEncoderReranker:
    return CrossEncoderReranker(make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce")))


def test_cross_encoder_scores_one_float_per_text(tiny_ce: CrossEncoderReranker) -> None:
    texts = ["Toy Story (1995). Animation.", "Alien (1979). Horror, Sci-Fi.", "x"]
    scores = tiny_ce.score("space adventure", texts)
    assert scores.shape == (3,) and scores.dtype == np.float32 and np.all(np.isfinite(scores))
    assert len(set(scores.tolist())) == 3
    # Deterministic, and each pair is scored on its own (batching changes nothing).
    assert np.array_equal(scores, tiny_ce.score("space adventure", texts))
    assert tiny_ce.score("space adventure", texts[1:2])[0] == pytest.approx(scores[1], abs=1e-6)
    assert tiny_ce.score("space adventure", []).shape == (0,)


def test_cross_encoder_reorders_search_results(
    hash_index: Path, hash_embedder: HashEmbedder, tiny_ce: CrossEncoderReranker
) -> None:
    rec = Recommender.open(hash_index, embedder=hash_embedder, text_reranker=tiny_ce)
    text, k = "space adventure", 10
    options = _opts(cross_encoder=True, pool_factor=5)
    results = rec.search(text, k=k, options=options)
    # The pool: the 50 (pool_factor × k) nearest by cosine, in cosine order.
    pool = rec.search(text, k=50)
    scores = tiny_ce.score(text, [item.text for item in pool.items])
    order = np.argsort(-scores, kind="stable")[:k]
    assert results.ids == [pool.ids[i] for i in order]
    assert [i.score for i in results.items] == pytest.approx(scores[order].tolist(), abs=1e-6)
    assert results.ids != pool.ids[:k], "the re-ranker changed nothing: the test shows nothing"
    # Without the flag the re-ranker is not used.
    plain = Recommender.open(hash_index, embedder=hash_embedder)
    assert_same_ranking(rec.search(text, k=k), plain.search(text, k=k))


def test_cross_encoder_without_one_is_refused(rec: Recommender) -> None:
    with pytest.raises(InvalidArgument) as info:
        rec.search("toy", k=5, options=_opts(cross_encoder=True))
    assert info.value.field == "rerank.cross_encoder"
    with pytest.raises(InvalidArgument) as info:
        rec.recommend(
            [HistoryEvent(str(rec.bundle.ids[0]))], k=5, options=_opts(cross_encoder=True)
        )
    assert info.value.field == "rerank.cross_encoder"


def test_cross_encoder_model_must_be_a_loadable_directory(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not a local model directory"):
        CrossEncoderReranker(tmp_path / "missing").score("q", ["a"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedderError, match="cannot load cross-encoder"):
        CrossEncoderReranker(tmp_path / "empty").score("q", ["a"])
