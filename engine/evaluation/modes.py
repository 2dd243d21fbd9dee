"""The engine's query modes under evaluation: content, collaborative and hybrid.

Each is the engine through ``Recommender.recommend`` with ``QueryOptions(mode=...)``, like
``EngineMethod``; what differs is ``fit``: the collaborative vectors and the popularity prior are
learnt from the split's *training* interactions only (the bundle's own, if any, counted the
held-out ones), and attached to a copy of the bundle that shares its index and vectors. Methods
fitted on the same training frame share one model.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from engine.bundle import Bundle
from engine.collaborative import ALSConfig, CollaborativeModel, train_model
from engine.evaluation.baselines import EngineMethod
from engine.extras import Parts, attach, parts_of
from engine.hybrid import CONTENT_POPULARITY
from engine.interactions import popularity
from engine.recommender import Recommender
from engine.results import QueryOptions


class TrainedOnSplit:
    """One CF model and popularity per training frame, shared by the methods of a run."""

    def __init__(self, recommender: Recommender, als: ALSConfig | None = None) -> None:
        self.base = recommender
        self.als = als or ALSConfig()
        self._key: tuple[int, int] | None = None
        self._recommender: Recommender | None = None

    def recommender_for(self, train: pd.DataFrame) -> Recommender:
        key = (id(train), len(train))
        if self._recommender is None or key != self._key:
            bundle = self.base.bundle
            ids = [str(i) for i in bundle.ids]
            items = bundle.items.copy()
            items["popularity"] = popularity(train, ids)
            copy = Bundle(
                bundle.path,
                replace(bundle.manifest, has_popularity=True),
                bundle.index,
                bundle.vectors,
                items,
                deleted=bundle.deleted,
                row_of=bundle.row_of,
            )
            cf: CollaborativeModel = train_model(train, ids, self.als)
            attach(copy, Parts(cf, parts_of(bundle).lexical))
            # Same limits and defaults; the embedder loads on first use (only text needs it).
            self._recommender = Recommender(copy, config=self.base.config)
            self._key = key
        return self._recommender


class ModeMethod(EngineMethod):
    """The engine with ``options`` (its mode and fusion weights), CF and popularity learnt from
    the training split."""

    def __init__(self, trained: TrainedOnSplit, name: str, options: QueryOptions) -> None:
        super().__init__(trained.base, name, options=options)
        self.trained = trained

    def fit(self, train: pd.DataFrame) -> None:
        self.recommender = self.trained.recommender_for(train)


def mode_methods(recommender: Recommender, als: ALSConfig | None = None) -> dict[str, ModeMethod]:
    """Every mode as ``vecrec eval recommend`` reports them (defaults of each mode), plus content
    with the popularity prior the fusion rule can add."""
    trained = TrainedOnSplit(recommender, als)
    return {
        "content": ModeMethod(trained, "content", QueryOptions(mode="content")),
        "content+popularity": ModeMethod(
            trained,
            "content+popularity",
            QueryOptions(mode="content", fusion=CONTENT_POPULARITY),
        ),
        "collaborative": ModeMethod(trained, "collaborative", QueryOptions(mode="collaborative")),
        "hybrid": ModeMethod(trained, "hybrid", QueryOptions(mode="hybrid")),
    }
