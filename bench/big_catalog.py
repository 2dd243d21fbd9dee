"""A larger catalogue for the bulk benchmark: 100,000 real texts as items, Flat index.

The texts are bench/ann.py's (SciFact sentences and pairs, MovieLens titles), so their vectors
come from the embedding cache that benchmark fills (``--cache-dir``); popularity comes from
synthetic interactions, Zipf-distributed over the items (s = 0.9), which the synthetic users of
bench/synthetic_users.py draw their histories from.

    .venv/bin/python bench/big_catalog.py --out /tmp/big            # ~20 s with a warm cache
    .venv/bin/python bench/synthetic_users.py --index /tmp/big/indexes/big100k \\
        --users 100000 --out /tmp/big/users-100000.parquet
    .venv/bin/python bench/bulk.py --index /tmp/big/indexes/big100k \\
        --users 100000 --users-file /tmp/big/users-100000.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ann import real_texts  # noqa: E402
from engine.interactions import InteractionsSpec  # noqa: E402
from indexer.build import BuildConfig, build  # noqa: E402
from indexer.catalog import CatalogSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work directory")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=600_000)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "indexes" / ".cache")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts = real_texts()[: args.items]
    items = pd.DataFrame({"id": [f"t{i}" for i in range(len(texts))], "body": texts})
    items.to_csv(args.out / "items.csv", index=False)
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, len(texts) + 1) ** 0.9
    chosen = rng.choice(len(texts), size=args.interactions, p=p / p.sum())
    ratings = pd.DataFrame(
        {
            "user_id": rng.integers(0, args.interactions // 10, len(chosen)),
            "item_id": [f"t{i}" for i in chosen],
            "rating": 4.0,
        }
    )
    ratings.to_csv(args.out / "ratings.csv", index=False)
    config = BuildConfig(
        catalog=CatalogSpec(args.out / "items.csv", text_template="{body}", metadata_columns=()),
        name=f"big{args.items // 1000}k",
        indexes_dir=args.out / "indexes",
        model="all-MiniLM-L6-v2",
        factory="Flat",
        interactions=InteractionsSpec(args.out / "ratings.csv", weight_column="rating"),
        cache_dir=args.cache_dir,
        backend="onnx",  # bench/ann.py's backend: its cache holds these texts' vectors
    )
    start = time.perf_counter()
    report = build(config)
    print(
        f"{report.path}: {len(texts):,d} items in {time.perf_counter() - start:.0f} s "
        f"({report.cached:,d} vectors from the cache, {report.embedded:,d} embedded)"
    )


if __name__ == "__main__":
    main()
