"""BM25 over the items' texts (bm25s): the lexical signal fused with dense retrieval.

Built at index time from the same texts that were embedded, stored in the bundle under
``lexical/`` (bm25s's own files, each listed in the manifest with its checksum) and loaded with
the bundle. Tokens are lower-cased words of two or more characters, English stop words removed,
Snowball-stemmed (PyStemmer), as BEIR's BM25 baselines do.

Scores are for the rows the index was built over (``rows``: the bundle's indexed rows); items
appended by live updates have no lexical score until a compaction rebuilds it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BundleCorrupt

LEXICAL_DIR = "lexical"
_META_FILE = "tokenizer.json"
STOPWORDS = "en"
STEMMER_LANGUAGE = "english"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LexicalConfig:
    """BM25 parameters (Lucene's variant, bm25s's default and BEIR's k1/b)."""

    k1: float = 0.9
    b: float = 0.4


def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer(STEMMER_LANGUAGE)


class LexicalIndex:
    """A BM25 index of ``rows`` texts; :meth:`scores` gives ``float32 (rows,)`` per query."""

    def __init__(self, retriever: Any, rows: int, config: LexicalConfig) -> None:
        self.retriever = retriever
        self.rows = rows
        self.config = config
        self._stem = _stemmer()

    @classmethod
    def build(cls, texts: list[str], config: LexicalConfig | None = None) -> LexicalIndex:
        import bm25s

        config = config or LexicalConfig()
        tokens = bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=_stemmer(), show_progress=False)
        retriever = bm25s.BM25(k1=config.k1, b=config.b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts), config)

    def tokens(self, text: str) -> list[str]:
        import bm25s

        found = bm25s.tokenize(
            [text], stopwords=STOPWORDS, stemmer=self._stem, return_ids=False, show_progress=False
        )
        return [t for t in found[0] if t]

    def scores(self, text: str) -> np.ndarray:
        """``float32 (rows,)`` BM25 scores of every indexed row for ``text`` (0: no term shared)."""
        known = [t for t in self.tokens(text) if t in self.retriever.vocab_dict]
        if not known:
            return np.zeros(self.rows, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(known), dtype=np.float32)

    def save(self, directory: Path) -> list[str]:
        """Write the index under ``directory/lexical``; returns the written paths, relative."""
        target = directory / LEXICAL_DIR
        target.mkdir()
        self.retriever.save(str(target), show_progress=False)
        (target / _META_FILE).write_text(json.dumps(self.describe()), encoding="utf-8")
        return sorted(str(p.relative_to(directory)) for p in target.rglob("*") if p.is_file())

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        import bm25s

        target = directory / LEXICAL_DIR
        try:
            meta = json.loads((target / _META_FILE).read_text(encoding="utf-8"))
            retriever = bm25s.BM25.load(str(target), mmap=False)
        except Exception as exc:
            raise BundleCorrupt(f"bundle {directory}: unreadable lexical index: {exc}") from exc
        return cls(retriever, int(meta["rows"]), LexicalConfig(float(meta["k1"]), float(meta["b"])))

    def describe(self) -> dict[str, Any]:
        return {
            "method": "BM25 (bm25s, Lucene variant)",
            "k1": self.config.k1,
            "b": self.config.b,
            "rows": self.rows,
            "stopwords": STOPWORDS,
            "stemmer": STEMMER_LANGUAGE,
        }
