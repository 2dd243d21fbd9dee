"""Whether a query is light: about a millisecond of one core at most, and no model call.

A server may answer a light query on its event loop instead of handing it to a thread. Over HTTP
the hand-off costs more than a light query itself: two thread switches, the event loop woken
through its self-pipe, and every request thread contending for the GIL. Measured on 2 vCPU with
8 clients, ``/recommend`` over the MovieLens sample (Flat, 9,742 rows) answered 300-400 requests/s
through the thread pool and 440-610 inline (bench/RESULTS.md, issue 7, HTTP). A heavy query on
the loop would stall every other request, so the estimate errs towards heavy.

The cost is counted in vector floats a query reads: a Flat scan reads every row, an HNSW search
about ``efSearch`` expansions of up to ``2·M`` neighbours each, an IVF search its coarse
centroids and ``nprobe`` average lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faiss

from engine import hybrid
from engine.ann import Searcher
from engine.hnswlib_index import HnswlibIndex
from engine.native_params import innermost
from engine.recommender import Recommender
from engine.results import QueryOptions

# ~1.2 ms of one core at the ~13 GFLOP/s of FAISS's inner-product kernel here: about what
# the HTTP layer itself spends per request, so a light query at most doubles the event loop's
# time per request. The MovieLens sample's three interest scans (3 × 9,742 × 384 floats) are
# light; one scan of a 50k-row Flat is not.
LIGHT_QUERY_FLOATS = 16_000_000
# Each answer is assembled in Python (~7 µs an item with its text and metadata): a long answer
# is not light whatever its search costs.
LIGHT_MAX_K = 100
# A filter is evaluated over every row: ~3 ns a row (29 µs over the sample's 9,742 rows for a
# genre), the time FAISS's kernel takes to read ~40 floats. The sample's filters are light, a
# filter over a million rows (~3 ms) is not.
FILTER_FLOATS_PER_ROW = 40


def scan_floats(searcher: Searcher, params: Mapping[str, int] | None = None) -> int:
    """Vector floats one query reads in ``searcher`` with ``params`` over its defaults."""
    dim = int(searcher.vectors.shape[1])
    appended = searcher.size - searcher.indexed_rows  # scanned exactly, always
    rows = searcher.indexed_rows
    settings = searcher.parameters(params)
    index = innermost(searcher.index)
    if isinstance(index, HnswlibIndex):
        # Level 0 holds 2·M links a node, as FAISS's HNSW does.
        ef = settings.get("efSearch", index.ef_search)
        return (appended + ef * 2 * index.links) * dim
    if isinstance(index, faiss.IndexHNSW):
        hnsw: Any = index.hnsw  # faiss's stub omits nb_neighbors
        ef = settings.get("efSearch", int(hnsw.efSearch))
        return (appended + ef * int(hnsw.nb_neighbors(0))) * dim
    if isinstance(index, faiss.IndexIVF):
        nlist = max(int(index.nlist), 1)
        nprobe = settings.get("nprobe", int(index.nprobe))  # capped at nlist by the searcher
        return (appended + nlist + nprobe * -(-rows // nlist)) * dim
    return (appended + rows) * dim  # Flat, and any index this does not know: a full scan


def is_light(
    recommender: Recommender,
    options: QueryOptions | None,
    *,
    k: int,
    queries: int = 1,
    history_size: int = 0,
    filters: int = 0,
) -> bool:
    """True when ``queries`` searches for ``k`` items with ``options`` need no cross-encoder and
    read at most :data:`LIGHT_QUERY_FLOATS` vector floats, re-ranking, explanations and
    ``filters`` (each a pass over the catalogue) included (``/similar``: one search)."""
    options = options or recommender.config.options
    if options.rerank.cross_encoder or k > LIGHT_MAX_K:
        return False
    dim = int(recommender.searcher.vectors.shape[1])
    cost = queries * scan_floats(recommender.searcher, options.search_params)
    if options.rerank.mmr_lambda is not None:
        # Greedy MMR compares each of the pool's items with each one already picked.
        cost += k * k * options.rerank.pool_factor * dim
    if options.explain:
        cost += k * history_size * dim  # each answer against each history item
    cost += filters * recommender.searcher.size * FILTER_FLOATS_PER_ROW
    return cost <= LIGHT_QUERY_FLOATS


def recommend_is_light(
    recommender: Recommender,
    options: QueryOptions | None,
    *,
    k: int,
    interests: str | None,
    history_size: int,
    filters: int = 0,
) -> bool:
    """:func:`is_light` for a recommendation request: free-text ``interests`` need the embedding
    model (and in hybrid mode a lexical scan), so never; ``best_score`` searches once per liked
    history item, ``multi_interest`` once per interest; a bundle with collaborative vectors
    searches those too (counted as one more search of the same size)."""
    options = options or recommender.config.options
    if interests is not None and interests.strip():
        return False
    if options.strategy == "best_score":
        queries = max(history_size, 1)
    elif options.strategy == "multi_interest":
        queries = options.max_interests
    else:
        queries = 1
    parts = hybrid.parts_of(recommender.bundle)
    if parts.collaborative is not None and options.mode != "content":
        queries += 1
    return is_light(
        recommender, options, k=k, queries=queries, history_size=history_size, filters=filters
    )
