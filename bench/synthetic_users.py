"""Synthetic users for bulk-retrieval scale tests, shaped like the sample's real ones.

Each user's history length is drawn from MovieLens' ratings-per-user distribution (20 to 2,698,
median ~70), its items from the catalogue's popularity distribution (the bundle's popularity
field: distinct raters), without repeats, its ratings from MovieLens' rating histogram, and its
times from the last two years. Written as Parquet, one row per user (``user_id``, ``history``:
a list of ``{item_id, weight, timestamp}``), in row groups, so N is bounded by disk, not memory.

Usage: ``python bench/synthetic_users.py --index indexes/movielens --users 1000000 --out users.parquet``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.bundle import Bundle

ROOT = Path(__file__).resolve().parents[1]
RATINGS = ROOT / "examples" / "movielens" / "ratings.csv"
ROW_GROUP = 20_000
EVENT = pa.struct([("item_id", pa.string()), ("weight", pa.float64()), ("timestamp", pa.float64())])
SCHEMA = pa.schema([("user_id", pa.string()), ("history", pa.list_(EVENT))])
NOW = 1_760_000_000.0
TWO_YEARS = 2 * 365 * 86_400.0


class UserMaker:
    """Draws users like the sample's: lengths, items by popularity, ratings, times."""

    def __init__(self, bundle: Bundle, seed: int = 0, max_history: int | None = None) -> None:
        ratings = pd.read_csv(RATINGS, usecols=["userId", "rating"])
        self.lengths = ratings.groupby("userId").size().to_numpy()
        if max_history is not None:
            self.lengths = np.minimum(self.lengths, max_history)
        values, counts = np.unique(ratings["rating"].to_numpy(), return_counts=True)
        self.rating_values, self.rating_p = values, counts / counts.sum()
        weight = (bundle.popularity if bundle.popularity is not None else np.ones(len(bundle))) + 1
        self.cdf = np.cumsum(weight / weight.sum())
        self.ids = np.asarray(bundle.ids, dtype=object)
        self.rng = np.random.default_rng(seed)

    def table(self, first: int, n: int) -> pa.Table:
        """Users ``first .. first + n - 1`` (ids ``u<number>``)."""
        rng = self.rng
        lengths = np.minimum(rng.choice(self.lengths, size=n), len(self.ids))
        offsets = np.zeros(n + 1, dtype=np.int64)
        items_out: list[np.ndarray] = []
        for u, length in enumerate(lengths):
            rows = np.zeros(0, dtype=np.int64)
            while len(rows) < length:  # draws with repeats, deduplicated in draw order
                draw = np.searchsorted(self.cdf, rng.random(int(length * 1.5) + 8))
                draw = np.minimum(draw, len(self.ids) - 1)
                both = np.concatenate([rows, draw])
                _, first_seen = np.unique(both, return_index=True)
                rows = both[np.sort(first_seen)][:length]
            items_out.append(rows)
            offsets[u + 1] = offsets[u] + len(rows)
        rows = np.concatenate(items_out)
        total = len(rows)
        events = pa.StructArray.from_arrays(
            [
                pa.array(self.ids[rows], type=pa.string()),
                pa.array(rng.choice(self.rating_values, size=total, p=self.rating_p)),
                pa.array(np.round(NOW - rng.random(total) * TWO_YEARS)),
            ],
            fields=list(EVENT),
        )
        history = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), events)
        users = pa.array([f"u{first + i}" for i in range(n)], type=pa.string())
        return pa.Table.from_arrays([users, history], schema=SCHEMA)


def write_users(
    bundle: Bundle, n: int, out: Path, *, seed: int = 0, max_history: int | None = None
) -> Path:
    """Write ``n`` synthetic users to ``out`` (Parquet) and return it."""
    maker = UserMaker(bundle, seed, max_history)
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out, SCHEMA, compression="zstd") as writer:
        for first in range(0, n, ROW_GROUP):
            writer.write_table(maker.table(first, min(ROW_GROUP, n - first)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(ROOT / "indexes" / "movielens"))
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-history", type=int, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    bundle = Bundle.load(args.index, verify=False)
    path = write_users(
        bundle, args.users, Path(args.out), seed=args.seed, max_history=args.max_history
    )
    meta = pq.ParquetFile(path).metadata
    print(
        f"{meta.num_rows:,d} users in {path} ({path.stat().st_size / 2**20:.0f} MiB) "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
