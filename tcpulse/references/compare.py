"""Listing a reference set and comparing two.

Owns: `describe(refset)`, the lines of `tcpulse references list` (each service, then its
methods or exchanges, one a line), and `differences(a, b)`, the lines of `tcpulse references
diff` (services, methods and exchanges one set has and the other lacks, and exchanges whose
routing-key fields differ).

Pure module: imports only `records` and `sets`; only the command line imports it.

Example:
    >>> from tcpulse.references import open_set
    >>> next(line for line in describe(open_set("bundled")) if line.startswith("QueueEvents.taskGroupSealed"))
    'QueueEvents.taskGroupSealed  exchange/taskcluster-queue/v1/task-group-sealed  primary.taskGroupId.schedulerId.reserved...'
"""
from typing import Dict, Iterator, List, Union

from tcpulse.references.records import ExchangeEntry, FunctionEntry, Reference, key_layout
from tcpulse.references.sets import ReferenceSet


def describe(refset: ReferenceSet) -> Iterator[str]:
    """Every service of the set, followed by its methods or exchanges, one a line."""
    for ref in refset.references():
        if ref.kind == "api":
            yield f"{ref.name}  {ref.service_name}/{ref.api_version}  {len(ref.entries)} methods"
        else:
            yield f"{ref.name}  {ref.exchange_prefix}  {len(ref.entries)} exchanges"
        for entry in ref.entries:
            yield f"{ref.name}.{entry.name}  {_entry_text(ref, entry)}"


def _entry_text(ref: Reference, entry: Union[FunctionEntry, ExchangeEntry]) -> str:
    if isinstance(entry, FunctionEntry):
        return f"{entry.method.upper()} {entry.route}"
    prefix = (ref.exchange_prefix or "").rstrip("/")
    return f"{prefix}/{entry.exchange.lstrip('/')}  {key_layout(entry.routing_key)}"


def differences(a: ReferenceSet, b: ReferenceSet) -> List[str]:
    """What `a` has that `b` lacks and the reverse, one line each; empty when they agree.

    Example:
        >>> from tcpulse.references import open_set
        >>> [line for line in differences(open_set("bundled"), open_set("legacy-2018")) if "Object" in line]
        ['only in bundled: service Object']
    """
    lines: List[str] = []
    for first, second in ((a, b), (b, a)):
        lines += [f"only in {first.label}: service {name}" for name in first.names() if name not in second.names()]
    for name in (n for n in a.names() if n in b.names()):
        mine, theirs = _entries(a.get(name)), _entries(b.get(name))
        word = "method" if a.get(name).kind == "api" else "exchange"
        for first, one, other in ((a, mine, theirs), (b, theirs, mine)):
            lines += [f"only in {first.label}: {word} {name}.{entry}" for entry in one if entry not in other]
        lines += [_key_difference(a, b, f"{name}.{entry}", mine[entry], theirs[entry])
                  for entry in mine if entry in theirs and _fields(mine[entry]) != _fields(theirs[entry])]
    return lines


def _entries(ref: Reference) -> Dict[str, Union[FunctionEntry, ExchangeEntry]]:
    return {entry.name: entry for entry in ref.entries}


def _fields(entry: Union[FunctionEntry, ExchangeEntry]) -> List[str]:
    return [field.name for field in entry.routing_key] if isinstance(entry, ExchangeEntry) else []


def _key_difference(a: ReferenceSet, b: ReferenceSet, name: str, mine: ExchangeEntry, theirs: ExchangeEntry) -> str:
    return (f"routing key of exchange {name}: {key_layout(mine.routing_key)} in {a.label}, "
            f"{key_layout(theirs.routing_key)} in {b.label}")
