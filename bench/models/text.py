"""Real English text that ships with every Python, so inputs and perplexity need no download."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def reference_text() -> str:
    """The standard library's pydoc topics (~465 k characters), joined in sorted-key order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def text_slice(chars: int, offset: int = 0) -> str:
    """A fixed, reproducible slice of the reference text."""
    text = reference_text()
    if offset + chars > len(text):
        raise ValueError(f"slice [{offset}, {offset + chars}) exceeds the reference text ({len(text)} chars)")
    return text[offset:offset + chars]
