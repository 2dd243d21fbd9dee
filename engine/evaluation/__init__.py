"""Offline evaluation: splits, metrics, baselines, and the runners that tie them together.

Every method, the engine included, sees the same split and has the same seen items excluded.
"""

from engine.evaluation.baselines import (
    EngineMethod,
    ItemKNNMethod,
    Method,
    PopularMethod,
    RandomMethod,
)
from engine.evaluation.metrics import ranking_metrics
from engine.evaluation.runner import EvalConfig, EvalReport, MethodResult, evaluate_recommenders
from engine.evaluation.splits import Split, SplitConfig, split_interactions

__all__ = [
    "EngineMethod",
    "EvalConfig",
    "EvalReport",
    "ItemKNNMethod",
    "Method",
    "MethodResult",
    "PopularMethod",
    "RandomMethod",
    "Split",
    "SplitConfig",
    "evaluate_recommenders",
    "ranking_metrics",
    "split_interactions",
]
