"""Embedding backends side by side: speed on short and medium texts, and what int8 costs.

    .venv/bin/python bench/embed_backends.py                 # speed + quality (quality cached)
    .venv/bin/python bench/embed_backends.py --no-quality    # speed only (~1 min)

Speed, all backends in the same process, interleaved round by round (best round kept, so a
neighbour's burst of CPU on the shared cores hurts every backend alike):

* short: MovieLens "title. Genres: ..." texts, batched (batch 64), sentences/s;
* medium: SciFact abstracts (title + text, truncated at 256 tokens), batched, sentences/s;
* single: one short text per call, ms (the server's query path), at 1 and 2 threads.

Quality against torch fp32: SciFact nDCG@10 of exact search (300 test queries, 5,183 abstracts;
each backend embeds both queries and corpus), the overlap of each query's top-10 with torch's,
and the overlap of MovieLens items' 10 nearest neighbours. Corpus vectors are cached per backend
in ``--cache-dir`` (torch takes ~7.5 min for the corpus on 2 vCPU), so reruns are quick.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.embedder import BACKENDS, Embedder, load_embedder  # noqa: E402
from engine.evaluation.beir import load_qrels, load_queries, search_metrics  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def short_texts(n: int) -> list[str]:
    movies = pd.read_csv(DATA / "ml-latest-small" / "movies.csv")
    texts = [
        f"{t}. Genres: {g.replace('|', ', ')}."
        for t, g in zip(movies.title, movies.genres, strict=True)
    ]
    return texts[:n]


def scifact_corpus() -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(str(row["_id"]))
            texts.append(f"{row.get('title', '')} {row['text']}".strip())
    return ids, texts


def rate(embedder: Embedder, texts: list[str], batch_size: int = 64) -> float:
    start = time.perf_counter()
    embedder.embed(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start)


def single_ms(embedder: Embedder, texts: list[str]) -> float:
    times = []
    for text in texts:
        start = time.perf_counter()
        embedder.embed([text])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def speed(args: argparse.Namespace, export_dir: Path) -> dict[str, dict[str, float]]:
    short = short_texts(args.short)
    _, corpus = scifact_corpus()
    medium = corpus[: args.medium]
    two = {
        b: load_embedder("all-MiniLM-L6-v2", backend=b, threads=2, export_dir=export_dir)
        for b in BACKENDS
    }
    one = {
        b: load_embedder("all-MiniLM-L6-v2", backend=b, threads=1, export_dir=export_dir)
        for b in BACKENDS
    }
    for e in (*two.values(), *one.values()):
        e.embed(short[:8])  # load, export if needed, warm up
    best: dict[str, dict[str, float]] = {b: {} for b in BACKENDS}
    for _ in range(args.rounds):
        for b in BACKENDS:
            row = {
                "short/s": rate(two[b], short),
                "medium/s": rate(two[b], medium),
                "single ms (2 thr)": single_ms(two[b], short[: args.single]),
                "single ms (1 thr)": single_ms(one[b], short[: args.single]),
            }
            for key, value in row.items():
                better = max if key.endswith("/s") else min
                best[b][key] = better(best[b].get(key, value), value)
    return best


def corpus_vectors(backend: str, texts: list[str], cache: Path, export_dir: Path) -> np.ndarray:
    path = cache / f"scifact-corpus-{backend}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    embedder = load_embedder("all-MiniLM-L6-v2", backend=backend, threads=2, export_dir=export_dir)
    start = time.perf_counter()
    vectors = embedder.embed(texts, batch_size=32)
    print(
        f"  embedded the SciFact corpus with {backend} in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def top10(queries: np.ndarray, base: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    sims = queries @ base.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, 9, axis=1)[:, :10]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b, strict=True)]))


def quality(args: argparse.Namespace, export_dir: Path) -> dict[str, dict[str, float]]:
    ids, corpus = scifact_corpus()
    queries = load_queries(DATA / "scifact" / "queries.jsonl")
    qrels = load_qrels(DATA / "scifact" / "qrels" / "test.tsv")
    judged = [q for q in qrels if q in queries]
    short = short_texts(args.neighbours)
    out: dict[str, dict[str, float]] = {}
    ref_query_top = ref_item_top = None
    for backend in ["torch", *(b for b in args.quality_backends if b != "torch")]:
        embedder = load_embedder(
            "all-MiniLM-L6-v2", backend=backend, threads=2, export_dir=export_dir
        )
        base = corpus_vectors(backend, corpus, Path(args.cache_dir), export_dir)
        q = embedder.embed([queries[x] for x in judged])
        query_top = top10(q, base)
        ndcg = np.mean(
            [
                search_metrics([ids[i] for i in row], qrels[x])["nDCG@10"]
                for x, row in zip(judged, query_top, strict=True)
            ]
        )
        items = embedder.embed(short)
        item_top = top10(items, items, exclude_self=True)
        if ref_query_top is None:
            ref_query_top, ref_item_top = query_top, item_top
        assert ref_item_top is not None
        out[backend] = {
            "nDCG@10": float(ndcg),
            "query top-10 overlap": overlap(query_top, ref_query_top),
            "item neighbour overlap@10": overlap(item_top, ref_item_top),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=1000, help="short texts per round")
    parser.add_argument("--medium", type=int, default=128, help="medium texts per round")
    parser.add_argument("--single", type=int, default=100, help="one-text calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=2000, help="MovieLens items compared")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument(
        "--quality-backends",
        type=lambda s: s.split(","),
        default=list(BACKENDS),
        help="backends whose quality is measured against torch (default: all)",
    )
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--cache-dir", default=str(ROOT / "indexes" / ".cache" / "bench"))
    args = parser.parse_args()
    export_dir = ROOT / "indexes" / ".cache" / "onnx"
    if not args.no_speed:
        rows = speed(args, export_dir)
        keys = list(rows[BACKENDS[0]])
        print("| backend | " + " | ".join(keys) + " | short ×torch | single (1 thr) ×torch |")
        print("|---" * (len(keys) + 3) + "|")
        base = rows["torch"]
        for b, row in rows.items():
            cells = [f"{row[k]:.1f}" if k.endswith("/s") else f"{row[k]:.2f}" for k in keys]
            print(
                f"| {b} | "
                + " | ".join(cells)
                + f" | {row['short/s'] / base['short/s']:.2f}"
                + f" | {base['single ms (1 thr)'] / row['single ms (1 thr)']:.2f} |"
            )
    if not args.no_quality:
        rows_q = quality(args, export_dir)
        ref = rows_q["torch"]["nDCG@10"]
        print(
            "\n| backend | SciFact nDCG@10 | loss vs torch | query top-10 overlap | "
            "item neighbour overlap@10 |"
        )
        print("|---|---|---|---|---|")
        for b, row in rows_q.items():
            print(
                f"| {b} | {row['nDCG@10']:.4f} | {ref - row['nDCG@10']:+.4f} | "
                f"{row['query top-10 overlap']:.3f} | {row['item neighbour overlap@10']:.3f} |"
            )


if __name__ == "__main__":
    main()
