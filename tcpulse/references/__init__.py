"""The Taskcluster references tcpulse's classes are generated from.

Owns nothing itself: it names the two halves, `records` (one document checked into frozen
records) and `sets` (which documents exist, in which set, and which set is active), and keeps
the import path `tcpulse.references` for both. Fetching a deployment's set (`pull`) and
comparing sets (`compare`) are imported only by the command line.

Pure package: imports only the standard library (never kombu or requests).

Example:
    >>> from tcpulse.references import active_set
    >>> active_set().get("QueueEvents").entries[0].name
    'taskDefined'
"""
from tcpulse.references.records import (
    KINDS,
    ExchangeEntry,
    FunctionEntry,
    Reference,
    RoutingKeyField,
    class_name,
    key_layout,
    load_file,
    parse_document,
)
from tcpulse.references.sets import (
    BUNDLED,
    ENV_VAR,
    LEGACY,
    SHIPPED,
    ReferenceSet,
    active_set,
    load_all,
    open_set,
    selected_set,
    use_references,
    why_missing,
)

__all__ = [
    "KINDS", "ExchangeEntry", "FunctionEntry", "Reference", "RoutingKeyField", "class_name", "key_layout",
    "load_file", "parse_document", "BUNDLED", "ENV_VAR", "LEGACY", "SHIPPED", "ReferenceSet",
    "active_set", "load_all", "open_set", "selected_set", "use_references", "why_missing",
]
