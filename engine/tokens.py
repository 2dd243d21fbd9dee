"""How many model tokens a text takes, so a text past the model's window is reported, not
silently cut (all-MiniLM-L6-v2 reads 256 word pieces; sentence-transformers drops the rest)."""

from __future__ import annotations

import threading
from typing import Any

from engine.embedder import resolve_model_dir
from engine.errors import EmbedderError


class TokenCounter:
    """Counts tokens with a model directory's fast tokenizer (``tokenizer.json``), loaded once
    per model spec. Models without one (the test hash embedder) count nothing."""

    def __init__(self) -> None:
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _tokenizer(self, spec: str) -> Any:
        with self._lock:
            if spec not in self._tokenizers:
                self._tokenizers[spec] = None
                try:
                    path = resolve_model_dir(spec) / "tokenizer.json"
                except EmbedderError:
                    return None
                if path.is_file():
                    from tokenizers import Tokenizer

                    tokenizer = Tokenizer.from_file(str(path))
                    tokenizer.no_truncation()
                    tokenizer.no_padding()
                    self._tokenizers[spec] = tokenizer
            return self._tokenizers[spec]

    def count(self, spec: str, text: str, window: int | None) -> int | None:
        """Tokens of ``text`` under model ``spec`` (special tokens included); None when unknown
        or when the text is too short to reach ``window`` (a token spans at least one
        character)."""
        if window is not None and len(text) + 2 <= window:
            return None
        tokenizer = self._tokenizer(spec)
        if tokenizer is None:
            return None
        return len(tokenizer.encode(text).ids)
