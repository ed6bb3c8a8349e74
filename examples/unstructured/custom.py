"""Unstructured example: text statistics (a word count) for whatever text is posted.

``score_unstructured`` receives ``str`` for ``text/*`` and ``application/json`` bodies (decoded
with the request's charset, UTF-8 by default) and ``bytes`` for anything else; it answers JSON in
both cases. The ``top`` query parameter sets how many of the most frequent words to list.
"""

import json
import re
from collections import Counter
from typing import Any

from datarobot_drum import CustomHTTPError

WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
DEFAULT_TOP = 3


def load_model(code_dir: str) -> str:
    """Nothing to load; DRUM needs ``load_model`` for hook-only unstructured models."""
    return "word-count"


def _top(query: Any) -> int:
    raw = query.get("top", str(DEFAULT_TOP))
    if not raw.isdigit():
        raise CustomHTTPError(f"top must be a non-negative integer, got {raw!r}", status_code=400)
    return int(raw)


def score_unstructured(model: str, data: str | bytes, **kwargs: Any) -> tuple[str, dict[str, str]]:
    """Count the characters, lines and words of a text body (or the bytes of a binary one)."""
    mimetype = kwargs.get("mimetype")
    if isinstance(data, bytes):
        result: dict[str, Any] = {"bytes": len(data), "mimetype": mimetype}
    else:
        words = [w.lower() for w in WORD.findall(data)]
        top = Counter(words).most_common(_top(kwargs["query"]))
        result = {
            "characters": len(data),
            "lines": len(data.splitlines()),
            "mimetype": mimetype,
            "top_words": [[word, count] for word, count in top],
            "words": len(words),
        }
    body = json.dumps(result, sort_keys=True, separators=(",", ":")) + "\n"
    return body, {"mimetype": "application/json", "charset": "utf-8"}
