"""Hybrid recommendations and dense + BM25 search (issue 9): tuning, quality, cold start, latency.

Parts (``--part``, default all):

* ``scifact``: BEIR SciFact with the real MiniLM. The BM25 weight of the dense + BM25 fusion is
  chosen on the *train* queries; dense alone, BM25 alone and the fusion are then scored on the
  test queries, in the same process.
* ``movielens``: ml-latest-small, the per-user temporal split of ``vecrec eval recommend``
  (last 20% held out, hits = ratings >= 4, seen items excluded). Fusion weights are chosen on the
  validation split (carved from training); every mode and the baselines are then reported on
  validation and test. CF vectors and popularity come from each split's training part only.
* ``coldstart``: how often items with no training interaction appear in hybrid top-10 lists, and
  what a user with interests but no history gets.
* ``latency``: engine-level p50 of hybrid against content-only ``recommend`` on the sample bundle
  (CF learnt from all ratings), same users, alternating, in one process.

Usage: ``python bench/hybrid.py [--part scifact|movielens|coldstart|latency]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import Bundle, HistoryEvent, Recommender, RecommenderConfig  # noqa: E402
from engine.collaborative import ALSConfig, train_model  # noqa: E402
from engine.embedder import Embedder, load_embedder  # noqa: E402
from engine.evaluation import (  # noqa: E402
    EvalConfig,
    ItemKNNMethod,
    PopularMethod,
    SplitConfig,
    evaluate_recommenders,
)
from engine.evaluation.beir import load_qrels, load_queries, search_metrics  # noqa: E402
from engine.evaluation.modes import ModeMethod, TrainedOnSplit, mode_methods  # noqa: E402
from engine.extras import Parts, attach, parts_of  # noqa: E402
from engine.fusion import FusionWeights  # noqa: E402
from engine.interactions import InteractionsSpec, load_interactions  # noqa: E402
from engine.results import QueryOptions  # noqa: E402
from indexer.build import BuildConfig, build  # noqa: E402
from indexer.catalog import CatalogSpec  # noqa: E402
from indexer.sample import SAMPLE_DIR  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
INDEXES = ROOT / "indexes"
SPLIT = SplitConfig("temporal", 0.2, 1, 0)
ALS = ALSConfig(positive_threshold=4.0)  # positives: what counts as a hit, as for item-kNN


class MemoEmbedder:
    """Embeds each distinct query once (the grid searches repeat them)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.spec, self.dimension = inner.spec, inner.dimension
        self.max_seq_length = inner.max_seq_length
        self.memo: dict[str, np.ndarray] = {}

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            for t, v in zip(missing, self.inner.embed(missing, batch_size=batch_size), strict=True):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts])


def ratings() -> object:
    return load_interactions(
        InteractionsSpec(SAMPLE_DIR / "ratings.csv", "userId", "movieId", "rating", "timestamp")
    )


# -- SciFact ------------------------------------------------------------------------------------


def scifact_bundle() -> Path:
    """indexes/scifact-bm25: the corpus with a BM25 index (embeddings from the shared cache)."""
    config = BuildConfig(
        catalog=CatalogSpec(
            path=SCIFACT / "corpus.jsonl",
            id_column="_id",
            text_template="{title} {text}",
            metadata_columns=("title",),
        ),
        name="scifact-bm25",
        indexes_dir=INDEXES,
        factory="Flat",
        progress=False,
        lexical=True,
    )
    return build(config).path


def ndcg(rec: Recommender, queries: dict[str, str], qrels: dict, options: QueryOptions) -> dict:
    judged = [q for q in qrels if q in queries]
    totals: dict[str, float] = {}
    for q in judged:
        ranked = rec.search(queries[q], k=100, options=options).ids
        for name, value in search_metrics(ranked, qrels[q]).items():
            totals[name] = totals.get(name, 0.0) + value
    return {name: value / len(judged) for name, value in totals.items()}


def part_scifact() -> None:
    start = time.perf_counter()
    path = scifact_bundle()
    print(f"scifact bundle {path} ({time.perf_counter() - start:.0f} s)")
    # One torch thread: on a shared machine a contended pair of threads takes ~1 s a query.
    embedder = MemoEmbedder(load_embedder("all-MiniLM-L6-v2", threads=1))
    rec = Recommender(Bundle.load(path), embedder)
    queries = load_queries(SCIFACT / "queries.jsonl")
    embedder.embed(list(queries.values()))  # all at once, batched
    train, test = (
        load_qrels(SCIFACT / "qrels" / "train.tsv"),
        load_qrels(SCIFACT / "qrels" / "test.tsv"),
    )
    dense = QueryOptions(mode="content")
    print("\n### SciFact train queries (choice of the BM25 weight)\n")
    print("| fusion | nDCG@10 | Recall@100 |\n|---|---|---|")
    best, best_score = 0.0, -1.0
    for weight in (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0):
        options = (
            dense
            if weight == 0
            else QueryOptions(mode="hybrid", fusion=FusionWeights(content=1.0, lexical=weight))
        )
        m = ndcg(rec, queries, train, options)
        print(f"| dense + {weight} × BM25 | {m['nDCG@10']:.4f} | {m['Recall@100']:.4f} |")
        if m["nDCG@10"] > best_score:
            best, best_score = weight, m["nDCG@10"]
    print(f"\nchosen BM25 weight: {best}\n\n### SciFact test queries\n")
    print("| method | nDCG@10 | Recall@100 | MRR@10 |\n|---|---|---|---|")
    rows = {
        "dense (MiniLM)": dense,
        "BM25 alone": QueryOptions(mode="hybrid", fusion=FusionWeights(content=0.0, lexical=1.0)),
        f"dense + {best} × BM25 (chosen on train)": QueryOptions(
            mode="hybrid", fusion=FusionWeights(content=1.0, lexical=best)
        ),
        "default search (hybrid, engine default weights)": QueryOptions(),
    }
    for name, options in rows.items():
        m = ndcg(rec, queries, test, options)
        print(f"| {name} | {m['nDCG@10']:.4f} | {m['Recall@100']:.4f} | {m['MRR@10']:.4f} |")


# -- MovieLens ----------------------------------------------------------------------------------


def sample_recommender() -> Recommender:
    """The sample bundle (content vectors); CF and popularity are attached per split."""
    return Recommender(Bundle.load(INDEXES / "movielens"))


GRID = [
    FusionWeights(content=c, collaborative=1.0, popularity=p)
    for c in (0.0, 0.05, 0.1, 0.2)
    for p in (0.0, 0.05, 0.1, 0.2, 0.4)
]
CONTENT_POP_GRID = [FusionWeights(content=1.0, popularity=p) for p in (0.5, 1.0, 2.0, 4.0)]


def evaluate(interactions: object, methods: list, validation: bool) -> object:
    config = EvalConfig(ks=(10, 20, 100), threshold=4.0, split=SPLIT, validation=validation)
    bundle = sample_recommender().bundle
    return evaluate_recommenders(
        interactions,  # type: ignore[arg-type]
        methods,
        config,
        catalogue=[str(i) for i in bundle.ids],
        vectors=bundle.vectors,
        row_of=bundle.row_of,
    )


COLUMNS = ("NDCG@10", "Recall@20", "HitRate@10", "Coverage@10", "Novelty@10")


def table(report: object, title: str) -> None:
    print(f"\n### {title} ({report.users} users)\n")  # type: ignore[attr-defined]
    print("| method | " + " | ".join(COLUMNS) + " | s |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for r in report.results:  # type: ignore[attr-defined]
        cells = " | ".join(f"{r.metrics[c]:.4f}" for c in COLUMNS)
        print(f"| {r.name} | {cells} | {r.seconds:.1f} |")


def part_movielens(final: bool = False, only: str | None = None) -> None:
    interactions = ratings()
    rec = sample_recommender()
    catalogue = [str(i) for i in rec.bundle.ids]
    trained = TrainedOnSplit(rec, ALS)
    hybrid_grid, content_grid = GRID, CONTENT_POP_GRID
    if only:  # "C/P,C/P;P,P": a second, finer round
        pairs, _, pops = only.partition(";")
        hybrid_grid = [
            FusionWeights(content=float(c), collaborative=1.0, popularity=float(p))
            for c, p in (pair.split("/") for pair in pairs.split(",") if pair)
        ]
        content_grid = [
            FusionWeights(content=1.0, popularity=float(p)) for p in pops.split(",") if p
        ]
    # Validation: the grid of fusion weights (the CF model is learnt once per split).
    grid = [
        ModeMethod(
            trained,
            f"hybrid {w.content}/{w.collaborative}/{w.popularity}",
            QueryOptions(mode="hybrid", fusion=w),
        )
        for w in hybrid_grid
    ] + [
        ModeMethod(trained, f"content+pop {w.popularity}", QueryOptions(mode="content", fusion=w))
        for w in content_grid
    ]
    grid += [PopularMethod(catalogue), ItemKNNMethod(catalogue, positive_threshold=4.0)]
    report = evaluate(interactions, grid, validation=True)
    table(report, "validation: fusion weights (content/collaborative/popularity)")
    if final:
        # Both splits: baselines and every mode at its defaults (as `vecrec eval recommend`).
        for name, validation in (("validation", True), ("test", False)):
            methods = [PopularMethod(catalogue), ItemKNNMethod(catalogue, positive_threshold=4.0)]
            methods += list(mode_methods(rec, ALS).values())
            table(evaluate(interactions, methods, validation), f"{name} split: baselines and modes")


# -- cold start ---------------------------------------------------------------------------------


def part_coldstart() -> None:
    interactions = ratings()
    rec = sample_recommender()
    trained = TrainedOnSplit(rec, ALS)
    from engine.evaluation.splits import split_interactions

    split = split_interactions(interactions, SPLIT)  # type: ignore[arg-type]
    hybrid = trained.recommender_for(split.train)
    cf = parts_of(hybrid.bundle).collaborative
    assert cf is not None
    cold = ~cf.present
    users = list(split.train.groupby("user"))
    lists = 0
    with_cold = 0
    cold_slots = 0
    for _, history in users:
        events = [
            HistoryEvent(str(i), float(w))
            for i, w in zip(history["item"], history["weight"], strict=True)
        ]
        ids = hybrid.recommend(events, k=10).ids
        rows = [hybrid.bundle.row_of[i] for i in ids]
        n = int(cold[rows].sum())
        lists += 1
        with_cold += n > 0
        cold_slots += n
    print(
        f"\n### cold start: {int(cold.sum())} of {len(cold)} movies have no training interaction\n"
    )
    print(
        f"hybrid top-10, history only, {lists} users: {with_cold / lists:.1%} of lists hold a cold item; "
        f"{cold_slots / (10 * lists):.2%} of slots (catalogue share of cold items {cold.mean():.1%})"
    )
    hits = 0
    for _, history in users:
        top = history.sort_values("weight", ascending=False)["item"].iloc[0]
        title = str(hybrid.bundle.item_record(hybrid.bundle.row_of[str(top)])["title"])
        ids = hybrid.recommend(
            [
                HistoryEvent(str(i), float(w))
                for i, w in zip(history["item"], history["weight"], strict=True)
            ],
            interests=title.split(" (")[0],
            k=10,
        ).ids
        hits += any(cold[hybrid.bundle.row_of[i]] for i in ids)
    print(
        f"with the title of the user's top film as interests: {hits / lists:.1%} of lists hold a cold item"
    )
    for text in ("space adventure with robots", "romantic comedy in Paris", "heist gone wrong"):
        res = hybrid.recommend([], interests=text, k=5)
        print(f"\ninterests only: {text!r} ({res.source})")
        for item in res.items:
            row = hybrid.bundle.row_of[item.id]
            print(
                f"  {item.metadata.get('title')}  popularity {int(hybrid.bundle.popularity[row])}{'  [cold]' if cold[row] else ''}"
            )


# -- latency ------------------------------------------------------------------------------------


def part_latency(n_users: int = 300) -> None:
    interactions = ratings()
    bundle = Bundle.load(INDEXES / "movielens")
    started = time.perf_counter()
    cf = train_model(interactions, [str(i) for i in bundle.ids], ALSConfig(positive_threshold=4.0))  # type: ignore[arg-type]
    print(f"\nALS on all {len(interactions)} ratings: {time.perf_counter() - started:.1f} s")
    attach(bundle, Parts(cf, parts_of(bundle).lexical))
    rec = Recommender(bundle, config=RecommenderConfig())
    rng = np.random.default_rng(0)
    users = list(interactions.groupby("user"))  # type: ignore[attr-defined]
    picks = rng.choice(len(users), n_users, replace=False)
    cases = {"content": QueryOptions(mode="content"), "hybrid": QueryOptions(mode="hybrid")}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in picks:
        history = users[int(i)][1].head(int(rng.integers(5, 31)))
        events = [
            HistoryEvent(str(a), float(w), float(t))
            for a, w, t in zip(
                history["item"], history["weight"], history["timestamp"], strict=True
            )
        ]
        for name, options in cases.items():
            t0 = time.perf_counter()
            rec.recommend(events, k=10, options=options)
            times[name].append(time.perf_counter() - t0)
    p50 = {name: 1000 * statistics.median(v) for name, v in times.items()}
    p99 = {name: 1000 * float(np.percentile(v, 99)) for name, v in times.items()}
    print(f"\n### recommend latency, engine, {n_users} users (5-30 rated films), k = 10\n")
    print("| mode | p50 | p99 |\n|---|---|---|")
    for name in cases:
        print(f"| {name} | {p50[name]:.2f} ms | {p99[name]:.2f} ms |")
    print(f"\nratio hybrid / content at p50: {p50['hybrid'] / p50['content']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", default=None, help='movielens: "C/P,...;P,..." weights to try')
    parser.add_argument(
        "--part", choices=["scifact", "movielens", "coldstart", "latency", "all"], default="all"
    )
    args = parser.parse_args()
    parts = ["scifact", "movielens", "coldstart", "latency"] if args.part == "all" else [args.part]
    for part in parts:
        if part == "movielens":
            part_movielens(only=args.grid)
            continue
        {"scifact": part_scifact, "coldstart": part_coldstart, "latency": part_latency}[part]()


if __name__ == "__main__":
    main()
