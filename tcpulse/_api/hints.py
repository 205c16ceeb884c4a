"""Owns: the "Did you mean ...?" hint that every error about a misspelt name ends with.

A leaf module (standard library only), so the reference sets, the generated classes, the
recording reader and the clients can all import it without importing each other.

Example:
    >>> did_you_mean("taskGroupID", ["taskId", "taskGroupId"])
    " Did you mean 'taskGroupId'?"
    >>> did_you_mean("zzz", ["taskId"])
    ''
"""
from typing import Sequence


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """The " Did you mean ...?" hint naming the closest of `choices`, or "" when none is close."""
    import difflib  # only on an error: keeps `import tcpulse` from loading it

    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
