"""A bundle's optional parts: collaborative vectors (+ their FAISS index) and the BM25 index.

Both are listed in ``manifest.extras`` (what each holds) and their files in ``manifest.files``
(checksums, verified on load like the core files). Bundles without them load and serve as
before: content only. They are read on first use and kept in ``Bundle.extras``, which live
snapshots share. Compaction carries them over (:func:`carried_writers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.bundle import Bundle
from engine.collaborative import CollaborativeModel
from engine.lexical import LexicalIndex

COLLABORATIVE = "collaborative"
LEXICAL = "lexical"
_PARTS_KEY = "parts"

Writer = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Parts:
    """What a bundle adds to content vectors; every field may be absent."""

    collaborative: CollaborativeModel | None
    lexical: LexicalIndex | None


def parts_of(bundle: Bundle) -> Parts:
    """The bundle's optional parts, loaded once per version."""
    parts = bundle.extras.get(_PARTS_KEY)
    if parts is None:
        described = bundle.manifest.extras
        cf = None
        if COLLABORATIVE in described:
            cf = CollaborativeModel.load(bundle.path, described[COLLABORATIVE], bundle.indexed_rows)
        lexical = LexicalIndex.load(bundle.path) if LEXICAL in described else None
        parts = Parts(cf, lexical)
        bundle.extras[_PARTS_KEY] = parts
    assert isinstance(parts, Parts)
    return parts


def attach(bundle: Bundle, parts: Parts) -> None:
    """Use ``parts`` for ``bundle`` (the evaluation attaches a model learnt on its training
    split to a bundle built without interactions)."""
    bundle.extras[_PARTS_KEY] = parts


def popularity_prior(bundle: Bundle) -> np.ndarray | None:
    """``float64 (n,)``: log(1 + popularity), the prior fused in; None without popularity.

    Log, because the counts are heavy-tailed: a linear scale would leave every item but the few
    blockbusters near 0 after min-max.
    """
    if bundle.popularity is None:
        return None
    key = ("prior", len(bundle))
    prior = bundle.extras.get(str(key))
    if prior is None:
        prior = np.log1p(np.maximum(bundle.popularity, 0.0))
        bundle.extras[str(key)] = prior
    assert isinstance(prior, np.ndarray)
    return prior


def writers(
    collaborative: CollaborativeModel | None, lexical: LexicalIndex | None
) -> tuple[tuple[Writer, ...], dict[str, dict[str, object]]]:
    """BundleContent writers and manifest descriptions of the given parts."""
    out: list[Writer] = []
    described: dict[str, dict[str, object]] = {}
    if collaborative is not None:
        out.append(collaborative.save)
        described[COLLABORATIVE] = collaborative.describe()
    if lexical is not None:
        out.append(lexical.save)
        described[LEXICAL] = lexical.describe()
    return tuple(out), described


def carried_writers(
    bundle: Bundle, rows: np.ndarray, texts: list[str]
) -> tuple[tuple[Writer, ...], dict[str, dict[str, object]]]:
    """The parts of a compaction of ``bundle`` keeping ``rows`` (in order), whose texts are
    ``texts``: collaborative vectors follow their rows (rows added live have none until the
    next build with interactions); the BM25 index is rebuilt over all kept texts."""
    parts = parts_of(bundle)
    cf = parts.collaborative.take(rows, len(rows)) if parts.collaborative is not None else None
    lexical = LexicalIndex.build(texts, parts.lexical.config) if parts.lexical else None
    return writers(cf, lexical)
