"""Word tokens for the search index: the same function runs on notes and on queries."""

from __future__ import annotations

import re
import unicodedata

MAX_TOKEN_CHARS = 64
MAX_TOKENS_PER_NOTE = 5000
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-fold and drop accents, so 'Café' and 'cafe' are the same word."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def tokenize(text: str) -> list[str]:
    """Distinct normalized words in order of first appearance; '_' separates words too."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(normalize(text)):
        for word in match.group().split("_"):
            if word:
                seen.setdefault(word[:MAX_TOKEN_CHARS], None)
    return list(seen)


def note_tokens(title: str, content: str) -> list[str]:
    """The tokens stored with a note; bounded so one huge note cannot bloat the index."""
    return tokenize(f"{title}\n{content}")[:MAX_TOKENS_PER_NOTE]
