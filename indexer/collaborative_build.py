"""Build-time optional parts: collaborative vectors from the interactions, BM25 from the texts.

Both are learnt from what the build already read (no extra input); their files go into the
bundle through :func:`engine.extras.writers` with checksums like the core files.
"""

from __future__ import annotations

import pandas as pd

from engine.collaborative import ALSConfig, CollaborativeModel, train_model
from engine.errors import InvalidArgument
from engine.extras import Writer, writers
from engine.lexical import LexicalIndex


def extra_parts(
    *,
    item_ids: list[str],
    texts: list[str],
    interactions: pd.DataFrame | None,
    collaborative: bool,
    lexical: bool,
    als: ALSConfig | None = None,
) -> tuple[tuple[Writer, ...], dict[str, dict[str, object]]]:
    """Writers and manifest descriptions of the parts asked for."""
    cf: CollaborativeModel | None = None
    if collaborative:
        if interactions is None:
            raise InvalidArgument(
                "collaborative vectors need --interactions", field="collaborative"
            )
        cf = train_model(interactions, item_ids, als)
    bm25 = LexicalIndex.build(texts) if lexical else None
    return writers(cf, bm25)
