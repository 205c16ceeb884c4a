"""Topic matching with AMQP's rules.

Pure module: imports only the standard library (never kombu or requests).

Example:
    >>> topic_matches("primary.#", "primary")
    True
"""
import functools
from typing import Tuple


def _words(text: str) -> Tuple[str, ...]:
    # RabbitMQ treats the empty key as zero words, not as one empty word.
    return tuple(text.split(".")) if text else ()


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> Tuple[str, ...]:
    return _words(pattern)


def topic_matches(pattern: str, key: str) -> bool:
    """Whether routing key `key` matches binding `pattern`: `*` is exactly one word,
    `#` zero or more words, anything else must equal the word in that position."""
    pat = _compile(pattern)
    words = _words(key)
    # reachable[j]: the pattern consumed so far can end right before word j.
    reachable = [True] + [False] * len(words)
    for token in pat:
        if token == "#":
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            for j in range(len(words), 0, -1):
                reachable[j] = reachable[j - 1] and (token == "*" or token == words[j - 1])
            reachable[0] = False
    return reachable[len(words)]
