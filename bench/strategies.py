"""Query strategies and re-rankers against the foundation's default, on MovieLens.

Every variant is the engine through ``Recommender.recommend`` (``EngineMethod``), scored on the
validation split (carved from the training part; used for choices) and then on the test split
(confirmation only), with the same split and metrics as ``vecrec eval recommend``.

Usage: ``python bench/strategies.py [--index indexes/movielens] [--split validation|test|both]``
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import (  # noqa: E402
    Boost,
    Bundle,
    Crowding,
    QueryOptions,
    Recommender,
    RerankConfig,
    UserModelConfig,
)
from engine.evaluation import EngineMethod, EvalConfig, SplitConfig, evaluate_recommenders  # noqa: E402
from engine.evaluation.splits import split_interactions, validation_split  # noqa: E402
from engine.interactions import InteractionsSpec, load_interactions  # noqa: E402
from indexer.sample import SAMPLE_DIR  # noqa: E402

POPULARITY = (Boost("popularity", 1.0),)


def variants() -> dict[str, dict]:
    mean = QueryOptions(strategy="mean")
    multi = QueryOptions(strategy="multi_interest", max_interests=3)
    best = QueryOptions(strategy="best_score")

    def with_(options: QueryOptions, **rerank: object) -> QueryOptions:
        return replace(options, rerank=RerankConfig(**rerank))  # type: ignore[arg-type]

    return {
        "mean (foundation default)": {"options": mean},
        "mean, neutral 3 (low ratings = dislikes)": {
            "options": mean,
            "user_model": UserModelConfig(neutral_weight=3.0),
        },
        "mean, no recency decay": {
            "options": mean,
            "user_model": UserModelConfig(half_life_days=None),
        },
        "best_score": {"options": best},
        "best_score, neutral 3": {
            "options": best,
            "user_model": UserModelConfig(neutral_weight=3.0),
        },
        "multi_interest m=3": {"options": multi},
        "multi_interest m=5": {"options": replace(multi, max_interests=5)},
        "mean + MMR 0.7": {"options": with_(mean, mmr_lambda=0.7)},
        "multi_interest + MMR 0.7": {"options": with_(multi, mmr_lambda=0.7)},
        "multi_interest + MMR 0.5": {"options": with_(multi, mmr_lambda=0.5)},
        "mean + crowding genres<=3": {"options": with_(mean, crowding=Crowding("genres", 3))},
        "mean + popularity boost 1.2x": {"options": with_(mean, boosts=POPULARITY, max_boost=1.2)},
        "mean + popularity boost 2x": {"options": with_(mean, boosts=POPULARITY, max_boost=2.0)},
        "best_score + popularity boost 2x": {
            "options": with_(best, boosts=POPULARITY, max_boost=2.0)
        },
        "multi_interest + popularity boost 2x": {
            "options": with_(multi, boosts=POPULARITY, max_boost=2.0)
        },
    }


COLUMNS = ("NDCG@10", "Recall@20", "Coverage@10", "Diversity@10", "Novelty@10")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", default=str(ROOT / "indexes" / "movielens"))
    parser.add_argument("--split", choices=["validation", "test", "both"], default="both")
    parser.add_argument("--only", default=None, help="comma-separated substrings of variant names")
    args = parser.parse_args()
    bundle = Bundle.load(args.index)
    interactions = load_interactions(
        InteractionsSpec(SAMPLE_DIR / "ratings.csv", "userId", "movieId", "rating", "timestamp")
    )
    chosen = variants()
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        chosen = {n: v for n, v in chosen.items() if any(k in n for k in keys)}
    splits = ["validation", "test"] if args.split == "both" else [args.split]
    for split in splits:
        config = EvalConfig(
            ks=(10, 20, 100),
            threshold=4.0,
            split=SplitConfig("temporal", 0.2, 1, 0),
            validation=split == "validation",
        )
        # The bundle's popularity counts every rating, test ones included: replace it with the
        # training part's counts so boosts cannot peek at held-out interactions.
        splitter = validation_split if split == "validation" else split_interactions
        train = splitter(interactions, config.split).train
        counts = train.drop_duplicates(["user", "item"]).groupby("item").size()
        popularity = counts.reindex(bundle.ids.tolist(), fill_value=0).to_numpy(dtype=float)
        bundle.items["popularity"] = popularity
        bundle.popularity = popularity
        recommender = Recommender(bundle)
        methods = [EngineMethod(recommender, name, **kwargs) for name, kwargs in chosen.items()]
        start = time.perf_counter()
        report = evaluate_recommenders(
            interactions,
            methods,
            config,
            catalogue=[str(i) for i in bundle.ids],
            vectors=bundle.vectors,
            row_of=bundle.row_of,
        )
        print(
            f"\n### {split} split ({report.users} users; {report.split}) "
            f"in {time.perf_counter() - start:.0f} s\n"
        )
        print("| variant | " + " | ".join(COLUMNS) + " | s |")
        print("|---" * (len(COLUMNS) + 2) + "|")
        for result in report.results:
            cells = " | ".join(f"{result.metrics[c]:.4f}" for c in COLUMNS)
            print(f"| {result.name} | {cells} | {result.seconds:.1f} |")


if __name__ == "__main__":
    main()
