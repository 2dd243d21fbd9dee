"""Query-command pieces of the ``vecrec`` CLI: filters, histories, re-ranking flags, output."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from typing import Any

from api.cli_common import positive_int
from engine import Filter, HistoryEvent, InvalidArgument, Results

_FILTER = re.compile(r"^\s*([^<>=!]+?)\s*(>=|<=|>|<|=)\s*(.*?)\s*$")


def parse_filter(text: str) -> Filter:
    """``genres=Comedy``, ``genres=Comedy,Drama`` (any), ``popularity>=100``, or a JSON object."""
    if text.lstrip().startswith("{"):
        # The HTTP API's model validates it: one definition of a filter object.
        from pydantic import ValidationError

        from api.models import FilterSpec

        try:
            return FilterSpec.model_validate_json(text).to_filter()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "filter"
            raise InvalidArgument(
                f"--filter {text!r} is not a valid filter object: {where}: {first['msg']}",
                field="filter",
            ) from exc
    match = _FILTER.match(text)
    if not match:
        raise InvalidArgument(
            f"--filter {text!r} must look like FIELD=VALUE, FIELD=A,B or FIELD>=NUMBER",
            field="filter",
        )
    name, op, value = match.groups()
    if op == "=":
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not values:
            raise InvalidArgument(f"--filter {text!r} has no value", field="filter")
        return Filter(name, eq=values[0]) if len(values) == 1 else Filter(name, any=tuple(values))
    try:
        number = float(value)
    except ValueError as exc:
        raise InvalidArgument(
            f"--filter {text!r}: {value!r} is not a number", field="filter"
        ) from exc
    key = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}[op]
    bound: dict[str, Any] = {key: number}
    return Filter(name, **bound)


def parse_history(text: str) -> list[HistoryEvent]:
    """``ID[:WEIGHT[@TIMESTAMP]]`` separated by commas: ``1:5,2:4.5@964982703,3:-1``."""
    events = []
    for position, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        item, _, rest = part.partition(":")
        weight_text, _, time_text = rest.partition("@")
        try:
            weight = float(weight_text) if weight_text else 1.0
            timestamp = float(time_text) if time_text else None
        except ValueError as exc:
            raise InvalidArgument(
                f"--history entry {position} ({part!r}) must look like ID[:WEIGHT[@TIMESTAMP]]",
                field="history",
            ) from exc
        events.append(HistoryEvent(item.strip(), weight, timestamp))
    return events


def _results_json(results: Results) -> dict[str, Any]:
    return {
        "source": results.source,
        "unknown_ids": list(results.unknown_ids),
        "items": [
            {
                "id": i.id,
                "score": i.score,
                "text": i.text,
                "metadata": i.metadata,
                "reasons": [asdict(r) for r in i.reasons],
            }
            for i in results.items
        ],
    }


def print_results(results: Results, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_results_json(results), ensure_ascii=False, indent=2))
        return
    if results.unknown_ids:
        print(f"skipped unknown ids: {', '.join(results.unknown_ids)}", file=sys.stderr)
    print(f"{'#':>3}  {'id':<10} {'score':>8}  item   (from {results.source})")
    for rank, item in enumerate(results.items, 1):
        label = str(item.metadata.get("title") or item.metadata.get("name") or item.text)
        extra = item.metadata.get("genres")
        if isinstance(extra, list):
            label += f"  [{', '.join(map(str, extra))}]"
        print(f"{rank:>3}  {item.id:<10} {item.score:>8.4f}  {label[:100]}")
        for reason in item.reasons:
            what = (
                f"you liked {reason.label or reason.item_id}"
                if reason.kind == "item"
                else "your interests"
            )
            print(f"{'':>25}because {what} ({reason.share:.0%})")


def add_rerank_options(parser: argparse.ArgumentParser) -> None:
    """Strategy, re-ranking and explanation options of the query commands."""
    parser.add_argument(
        "--strategy",
        choices=["mean", "best_score", "multi_interest"],
        default=None,
        help="history → query strategy (default: multi_interest)",
    )
    parser.add_argument(
        "--max-interests", type=positive_int, default=3, help="multi_interest: most taste clusters"
    )
    parser.add_argument(
        "--mmr",
        type=float,
        default=None,
        metavar="LAMBDA",
        help="MMR diversity: 1 = pure relevance, lower = more diverse",
    )
    parser.add_argument(
        "--crowd", default=None, metavar="FIELD=N", help="at most N results share a value of FIELD"
    )
    parser.add_argument(
        "--boost",
        action="append",
        default=[],
        metavar="FIELD=WEIGHT[:rank|minmax]",
        help="bounded boost by a numeric field (repeatable)",
    )
    parser.add_argument(
        "--max-boost", type=float, default=1.2, help="largest factor boosts may lift a relevance by"
    )
    parser.add_argument(
        "--no-exact", action="store_true", help="skip re-scoring with the stored full vectors"
    )
    parser.add_argument(
        "--cross-encoder",
        default=None,
        metavar="DIR",
        help="re-rank text queries with this local cross-encoder",
    )
    parser.add_argument(
        "--explain", action="store_true", help="name the history items behind each result"
    )
    parser.add_argument(
        "--mode",
        choices=["content", "collaborative", "hybrid"],
        default=None,
        help="signals: text vectors, CF vectors or both fused (default: hybrid when the index "
        "has CF vectors; search: dense + BM25 when it has a BM25 index)",
    )
    parser.add_argument(
        "--fusion",
        default=None,
        metavar="SIGNAL=W,...",
        help="fusion weights of content, collaborative, popularity, lexical (omitted: 0)",
    )


def query_options(args: argparse.Namespace) -> Any:
    """The QueryOptions the query command's flags describe."""
    from engine import Boost, Crowding, QueryOptions, RerankConfig

    crowding = None
    if args.crowd:
        name, sep, count = args.crowd.partition("=")
        if not sep or not count.strip().isdigit():
            raise InvalidArgument(f"--crowd {args.crowd!r} must look like FIELD=N", field="crowd")
        crowding = Crowding(name.strip(), int(count))
    boosts = []
    for text in args.boost:
        name, sep, rest = text.partition("=")
        weight, _, transform = rest.partition(":")
        try:
            boosts.append(Boost(name.strip(), float(weight), transform or "rank"))
        except ValueError as exc:
            raise InvalidArgument(
                f"--boost {text!r} must look like FIELD=WEIGHT[:rank|minmax]", field="boost"
            ) from exc
    rerank = RerankConfig(
        exact=not args.no_exact,
        cross_encoder=args.cross_encoder is not None,
        boosts=tuple(boosts),
        max_boost=args.max_boost,
        mmr_lambda=args.mmr,
        crowding=crowding,
    )
    return QueryOptions(
        strategy=args.strategy or QueryOptions().strategy,
        max_interests=args.max_interests,
        rerank=rerank,
        explain=args.explain,
        mode=args.mode,
        fusion=parse_fusion(args.fusion) if args.fusion else None,
    )


def parse_fusion(text: str) -> Any:
    """``content=0.1,collaborative=1,popularity=0.3`` → FusionWeights (omitted signals: 0)."""
    from engine.fusion import SIGNALS, FusionWeights

    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        try:
            if not sep or name.strip() not in SIGNALS:
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError as exc:
            raise InvalidArgument(
                f"--fusion {text!r} must look like SIGNAL=WEIGHT,... with signals "
                f"{', '.join(SIGNALS)}",
                field="fusion",
            ) from exc
    return FusionWeights(**{name: weights.get(name, 0.0) for name in SIGNALS})
