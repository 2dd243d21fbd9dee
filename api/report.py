"""Evaluation reports on disk: ``report.md`` with the tables and PNG plots beside it.

Plots: each accuracy metric against K per method; and recall@10 against query latency for the
bundle's own index and for HNSW and IVF twins built from the same vectors, across their search
parameter (efSearch, nprobe), so the cost of each recall level is visible.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from engine import InvalidArgument, Recommender
from engine.ann import Searcher
from engine.evaluation.ann import AnnQuality, ann_quality, sweep_values
from engine.evaluation.beir import SearchReport
from engine.evaluation.runner import EvalReport

ACCURACY = ("NDCG", "Recall", "HitRate")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InvalidArgument(
            "--report needs matplotlib: pip install 'vecrec[eval]'", field="report"
        ) from exc
    return plt


def ann_curves(recommender: Recommender, queries: int = 200) -> dict[str, list[AnnQuality]]:
    """Recall/latency points of the bundle's index and of HNSW/IVF twins of its vectors."""
    from indexer.faiss_build import build_faiss_index
    from indexer.index_choice import ivf_nlist

    vectors = recommender.bundle.vectors
    factory = recommender.bundle.manifest.index.factory
    searchers = {f"{factory} (bundle)": recommender.searcher}
    twins = ["HNSW32", f"IVF{ivf_nlist(len(vectors))},Flat"]
    for twin in twins:
        if twin != factory and len(vectors) >= 64:
            searchers[twin] = Searcher(build_faiss_index(vectors, twin), vectors)
    return {
        name: [ann_quality(s, k=10, queries=queries, params=p) for p in sweep_values(s)]
        for name, s in searchers.items()
    }


def _plot_ann(path: Path, curves: dict[str, list[AnnQuality]]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot(
            [p.ms_per_query for p in points], [p.recall for p in points], marker="o", label=name
        )
        for p in points:
            if p.params:
                ax.annotate(
                    ",".join(f"{v}" for v in p.params.values()),
                    (p.ms_per_query, p.recall),
                    fontsize=7,
                )
    ax.set_xlabel("ms per query (single query)")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title("ANN recall against latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_metrics(path: Path, report: EvalReport) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(ACCURACY), figsize=(4 * len(ACCURACY), 3.6))
    for ax, metric in zip(axes, ACCURACY, strict=True):
        for result in report.results:
            ax.plot(
                report.ks,
                [result.metrics.get(f"{metric}@{k}", 0.0) for k in report.ks],
                marker="o",
                label=result.name,
            )
        ax.set_xscale("log")
        ax.set_xticks(report.ks, [str(k) for k in report.ks])
        ax.set_xlabel("K")
        ax.set_title(f"{metric}@K")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown_table(rows: dict[str, dict[str, float]], columns: list[str]) -> list[str]:
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{metrics.get(c, float('nan')):.4f}" for c in columns)
            + " |"
        )
    return lines


def _ann_lines(curves: dict[str, list[AnnQuality]]) -> list[str]:
    lines = ["| index | params | recall@10 | ms/query |", "|---|---|---|---|"]
    for name, points in curves.items():
        for p in points:
            lines.append(
                f"| {name} | {p.params or 'exact'} | {p.recall:.3f} | {p.ms_per_query:.3f} |"
            )
    return lines


def _recommend_lines(directory: Path, report: EvalReport, recommender: Recommender) -> list[str]:
    _plot_metrics(directory / "metrics_at_k.png", report)
    rows = {r.name: r.metrics for r in report.results}
    accuracy = [f"{m}@{k}" for m in ACCURACY for k in report.ks] + ["MRR"]
    lists = [f"{m}@{k}" for m in ("Coverage", "Diversity", "Novelty") for k in report.ks]
    bundle = recommender.bundle
    return [
        "# Recommendation evaluation",
        "",
        f"- index: `{bundle.path}` ({len(bundle)} items, {bundle.manifest.index.factory})",
        f"- {report.split}",
        f"- users evaluated: {report.users}; training interactions {report.train_interactions}; "
        f"relevant held-out interactions {report.test_interactions}; interactions outside the "
        f"catalogue dropped: {report.dropped_interactions}",
        "",
        "## Accuracy",
        "",
        *_markdown_table(rows, accuracy),
        "",
        "![metrics at K](metrics_at_k.png)",
        "",
        "## Lists: coverage, diversity, novelty",
        "",
        *_markdown_table(rows, [c for c in lists if any(c in m for m in rows.values())]),
        "",
        "## Time (fit + all users' lists)",
        "",
        *[f"- {r.name}: {r.seconds:.1f} s" for r in report.results],
    ]


def _search_lines(report: SearchReport, recommender: Recommender) -> list[str]:
    bundle = recommender.bundle
    return [
        "# Search evaluation",
        "",
        f"- index: `{bundle.path}` ({len(bundle)} documents, model {bundle.manifest.model.spec})",
        f"- queries: {report.queries}; {1000 * report.seconds_per_query:.1f} ms per query",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" for name, value in report.metrics.items()],
    ]


def write_report(
    directory: Path,
    report: EvalReport | SearchReport,
    recommender: Recommender,
    quality: AnnQuality,
) -> Path:
    """Write ``report.md`` and its PNG plots to ``directory``; return the Markdown file."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(report, EvalReport):
        lines = _recommend_lines(directory, report, recommender)
    else:
        lines = _search_lines(report, recommender)
    curves = ann_curves(recommender)
    _plot_ann(directory / "ann_recall_latency.png", curves)
    lines += [
        "",
        "## ANN quality",
        "",
        f"The bundle's index: recall@10 {quality.recall:.3f} against exact search.",
        "",
        *_ann_lines(curves),
        "",
        "![ANN recall against latency](ann_recall_latency.png)",
        "",
        f"Written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}.",
        "",
    ]
    path = directory / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
