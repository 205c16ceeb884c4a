"""Checks of a `Listener`'s options, each raising one ValueError that names the option and what
it takes (pure).

Example:
    >>> positive("concurrency", 0)
    Traceback (most recent call last):
    ...
    ValueError: concurrency must be an integer >= 1 (got 0)
"""
from typing import Any, FrozenSet, Iterable, Optional, Union


def check_name(name: Optional[str]) -> None:
    if name is not None and (not isinstance(name, str) or not name or name.startswith("/")):
        raise ValueError(f"Listener name must be a non-empty string such as 'task-watcher' (got {name!r})")


def exchanges_to_declare(value: Any) -> Union[bool, FrozenSet[str]]:
    """True/False, or the full names of the exchanges (names or entries) to create.

    Example:
        >>> sorted(exchanges_to_declare("exchange/alice/builds"))
        ['exchange/alice/builds']
    """
    if isinstance(value, bool):
        return value
    items = [value] if isinstance(value, str) else value
    names = [getattr(item, "exchange", item) for item in items] if isinstance(items, Iterable) else [value]
    for name in names:
        if not isinstance(name, str) or not name.startswith("exchange/"):
            raise ValueError("declare_exchanges must be True, False, or the exchanges to create, as full names "
                             f"('exchange/<user>/...') or exchange entries (got {name!r})")
    return frozenset(names)


def seconds_or_none(what: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a number of seconds > 0, or None for never (got {value!r})")
    return float(value)


def positive(what: str, value: Any, least: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{what} must be an integer >= {least} (got {value!r})")
    return value
