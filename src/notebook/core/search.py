"""Word tokens for the search index: the same function runs on notes and on queries."""

from __future__ import annotations

import re
import unicodedata

MAX_TOKEN_CHARS = 64
TITLE_KEY_CHARS = 100
MAX_TOKENS_PER_NOTE = 5000
# runs of word characters other than '_': the same words as \w+ split on '_'
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-fold and drop accents, so 'Café' and 'cafe' are the same word."""
    if text.isascii():
        return text.lower()  # nothing to decompose or drop; ASCII case-folds as lower() does
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def title_sort_key(title: str) -> str:
    """The key notes are ordered by title with (TITLE_ASC), in views, cursors and Python sorts.

    CouchDB 3 collates view keys with ICU (case and accents weigh less than letters; punctuation
    and digits have their own ranks) while pouchdb-server compares code points, so the same
    titles came back in different orders with different cursors. This key is the lowercase hex
    of the UTF-8 bytes of the case-folded, accent-free title (its first TITLE_KEY_CHARS
    characters): strings of [0-9a-f] order identically under ICU, under code points and in
    Python (digits before letters, a shorter prefix first), and hex-encoded UTF-8 keeps the
    code-point order of the normalized title. Ties are broken by note id everywhere.
    """
    return normalize(title)[:TITLE_KEY_CHARS].encode("utf-8").hex()


def tokenize(text: str) -> list[str]:
    """Distinct normalized words in order of first appearance; '_' separates words too."""
    return list(dict.fromkeys(word[:MAX_TOKEN_CHARS] for word in _WORD.findall(normalize(text))))


def note_tokens(title: str, content: str) -> list[str]:
    """The tokens stored with a note; bounded so one huge note cannot bloat the index."""
    return tokenize(f"{title}\n{content}")[:MAX_TOKENS_PER_NOTE]
