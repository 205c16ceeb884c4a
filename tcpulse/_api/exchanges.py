"""Routing keys of Taskcluster's topic exchanges: `Exchange` and the `*Events` classes.

Owns: turning each exchange reference (`tcpulse.references.Reference` with kind 'exchanges')
into a generated class such as `QueueEvents` whose attributes are `Exchange` objects; building
binding patterns (the official client's four call forms), concrete routing keys for publishing,
and parsing a routing key back into its fields; the registry of every exchange of a reference
set (the active one unless told); and the option names every client and events class accepts
(`CLIENT_OPTIONS`, `unknown_option`).

Pure module: imports only the standard library, `tcpulse.references`, `tcpulse._api.binding` (whose
`Binding` it re-exports) and `tcpulse.errors` (never kombu or requests), so routing keys cost
nothing but `import tcpulse`.

Example:
    >>> from tcpulse._api.exchanges import find_exchange
    >>> find_exchange("QueueEvents.taskCompleted")(taskGroupId="g")["routingKeyPattern"]
    'primary.*.*.*.*.*.*.*.g.#'
"""
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Dict, Generic, List, Optional, Sequence, Tuple, TypeVar

from tcpulse._api.binding import Binding, Immutable
from tcpulse._api.hints import did_you_mean
from tcpulse.errors import InvalidReference, TaskclusterTopicExchangeFailure
from tcpulse.references import Reference, ReferenceSet, RoutingKeyField, active_set, key_layout
from tcpulse._api.typenames import schema_id

# The word a publisher puts in place of an optional field it has no value for.
ABSENT = "_"
# Options the official client's constructor takes, for REST clients and events classes alike so
# one options dict serves both: only exchangePrefix changes anything for events, and REST clients
# accept (and ignore) exchangePrefix.
CLIENT_OPTIONS = ("rootUrl", "baseUrl", "credentials", "authorizedScopes", "maxRetries",
                  "signedUrlExpiration", "timeout", "exchangePrefix", "validate")
# The message body type of an exchange (a TypedDict of tcpulse.types), for type checkers only.
T = TypeVar("T")


def unknown_option(name: str, kind: str) -> str:
    """The error text for an option name not in CLIENT_OPTIONS, given to a `kind` of object.

    Example:
        >>> unknown_option("rootURL", "client").split(" Valid")[0]
        "unknown client option 'rootURL'. Did you mean 'rootUrl'?"
    """
    return (f"unknown {kind} option {name!r}.{did_you_mean(name, CLIENT_OPTIONS)} "
            f"Valid options: {', '.join(CLIENT_OPTIONS)}")


def full_exchange_name(prefix: str, suffix: str) -> str:
    """Join an exchange prefix and an entry's exchange as the official client does.

    Example:
        >>> full_exchange_name("exchange/taskcluster-queue/v1/", "task-completed")
        'exchange/taskcluster-queue/v1/task-completed'
    """
    return f"{prefix.rstrip('/')}/{suffix.lstrip('/')}"


class _InstanceDoc:
    """`__doc__` of a class whose instances each describe themselves: on the class, its own
    docstring; on an instance, the instance's `describe()` (what `help()` shows)."""

    def __init__(self, doc: str) -> None:
        self.doc = doc

    def __get__(self, obj: Any, owner: type) -> str:
        return self.doc if obj is None else obj.describe()


class Exchange(Immutable, Generic[T]):
    """One topic exchange of a service and the layout of its routing keys; `Exchange[T]` for
    type checkers, where T is its message's TypedDict (`Exchange[TaskCompletedMessage]`).

    Call it to get a `Binding` (the four forms of the official client), or use
    `routing_key()` / `parse()` for concrete keys. `schema` is the id of its message's JSON
    schema ('/schemas/queue/v1/task-completed-message.json'), '' when the reference names none.

    Example:
        >>> ex = find_exchange("QueueEvents.taskCompleted")
        >>> ex(taskId="abc").routing_key_pattern
        'primary.abc.*.*.*.*.*.*.*.#'
    """
    __slots__ = ("service", "name", "exchange", "fields", "title", "description", "schema")
    __doc__ = _InstanceDoc(__doc__)  # type: ignore[assignment]
    service: str
    name: str
    exchange: str
    fields: Tuple[RoutingKeyField, ...]
    title: str
    description: str
    schema: str

    def __init__(self, service: str, name: str, exchange: str, fields: Tuple[RoutingKeyField, ...],
                 title: str = "", description: str = "", schema: str = ""):
        self._set(service=service, name=name, exchange=exchange, fields=fields, title=title, description=description,
                  schema=schema)

    def describe(self) -> str:
        """What `help()` and `__doc__` show: title, description, routing-key fields, schema.

        Example:
            >>> print(find_exchange("GithubEvents.push").describe().splitlines()[0])
            GithubEvents.push: GitHub push Event
        """
        from tcpulse._api.typenames import message_type

        lines = [f"{self.service}.{self.name}: {self.title}", "", self.description.strip(), "",
                 f"Exchange: {self.exchange}", f"Routing key: {key_layout(self.fields)}"]
        for f in self.fields:
            kind = (f"constant {f.constant!r}" if f.constant is not None else
                    ("required" if f.required else "optional") + (", several words" if f.multiple_words else ""))
            lines.append(f"    {f.name} ({kind}): {' '.join(f.summary.split())}")
        if self.schema:
            lines.append(f"Message schema: {self.schema} (type {message_type(self.schema)})")
        lines += ["", "Example:", f"    @app.on({self.service}.{self.name}"
                  f"{''.join(f', {f.name}=...' for f in self.fields if f.constant is None)[:60]})"]
        return "\n".join(lines)

    def _identity(self) -> Tuple[Any, ...]:
        # The description is prose: two exchanges that differ only in it are the same exchange.
        return (self.service, self.name, self.exchange, self.fields, self.title)

    def __eq__(self, other: Any) -> bool:
        return self._identity() == other._identity() if isinstance(other, Exchange) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._identity())

    def with_exchange(self, exchange: str) -> "Exchange[T]":
        """The same exchange layout under another full exchange name (an instance's prefix)."""
        return Exchange(self.service, self.name, exchange, self.fields, self.title, self.description, self.schema)

    def __repr__(self) -> str:
        return f"<Exchange {self.service}.{self.name} {self.exchange}>"

    @property
    def _label(self) -> str:
        return f"{self.service}.{self.name} ({self.exchange})"

    def __call__(self, /, *args: Any, **fields: Any) -> Binding:
        """A binding for this exchange: `()`, `(field=value, ...)`, `({field: value})`, or
        `('pattern')` (a string is used untouched).

        Example:
            >>> find_exchange("GithubEvents.push")({"organization": "mozilla"})["routingKeyPattern"]
            'primary.mozilla.*'
        """
        if args and fields:
            raise self._failure(
                f"takes one positional argument (a pattern string or a dict of fields) or keyword "
                f"fields, not both (got {len(args)} positional and {', '.join(sorted(fields))})")
        if len(args) > 1:
            raise self._failure(f"takes at most one positional argument (got {len(args)})")
        if args and isinstance(args[0], str):
            return Binding(self.exchange, args[0], self)
        if args and not isinstance(args[0], Mapping):
            raise self._failure(f"expects a pattern string, a dict of fields or keyword fields "
                                f"(got {type(args[0]).__name__} {args[0]!r})")
        given = self._given(dict(args[0]) if args else fields)
        words = [self._pattern_word(f, given.get(f.name)) for f in self.fields]
        return Binding(self.exchange, ".".join(words), self)

    def routing_key(self, /, **fields: Any) -> str:
        """The concrete routing key a publisher sends: every required field given, no wildcards;
        an optional field not given becomes '_'.

        Example:
            >>> find_exchange("GithubEvents.push").routing_key(organization="mozilla", repository=3)
            'primary.mozilla.3'
        """
        given = self._given(fields)
        missing = [f.name for f in self.fields if f.required and f.constant is None and f.name not in given]
        if missing:
            raise self._failure(f"needs every required field for a routing key; missing: {', '.join(missing)}")
        words = [self._key_word(f, given.get(f.name)) for f in self.fields]
        return ".".join(words)

    def parse(self, routing_key: str) -> Dict[str, Optional[str]]:
        """The field values of a concrete routing key, by name (the inverse of `routing_key`):
        '_' in an optional field reads as None; the multi-word field takes the words left over.

        Example:
            >>> find_exchange("HooksEvents.hookCreated").parse("a.b")
            {'reserved': 'a.b'}
        """
        if not isinstance(routing_key, str):
            raise self._failure(f"can only parse a string routing key (got {type(routing_key).__name__})")
        words = routing_key.split(".") if routing_key else []
        values = self._split(routing_key, words)
        return {f.name: self._parsed_value(f, value, routing_key) for f, value in zip(self.fields, values)}

    def _split(self, routing_key: str, words: List[str]) -> List[Optional[str]]:
        multi = next((i for i, f in enumerate(self.fields) if f.multiple_words), None)
        if multi is None:
            if len(words) != len(self.fields):
                raise self._misfit(routing_key, f"exactly {len(self.fields)}", len(words))
            return list(words)
        after = len(self.fields) - multi - 1
        least = len(self.fields) - 1 + (1 if self.fields[multi].required else 0)
        if len(words) < least:
            raise self._misfit(routing_key, f"at least {least}", len(words))
        middle = words[multi:len(words) - after]
        return [*words[:multi], ".".join(middle) if middle else None, *words[len(words) - after:]]

    def _parsed_value(self, field: RoutingKeyField, value: Optional[str], routing_key: str) -> Optional[str]:
        if field.constant is not None and value != field.constant:
            raise TaskclusterTopicExchangeFailure(
                f"routing key {routing_key!r} does not fit {self._label}: field {field.name!r} "
                f"must be the constant {field.constant!r} (got {value!r})")
        if value == ABSENT and not field.required:
            return None
        return value

    def _misfit(self, routing_key: str, expected: str, got: int) -> TaskclusterTopicExchangeFailure:
        return TaskclusterTopicExchangeFailure(
            f"routing key {routing_key!r} does not fit {self._label}: expected {expected} words "
            f"({key_layout(self.fields)}), got {got}")

    def _failure(self, message: str) -> TaskclusterTopicExchangeFailure:
        return TaskclusterTopicExchangeFailure(f"{self._label} {message}")

    def _field_failure(self, field: RoutingKeyField, message: str) -> TaskclusterTopicExchangeFailure:
        return TaskclusterTopicExchangeFailure(f"field {field.name!r} of {self._label} {message}")

    def _given(self, values: Dict[Any, Any]) -> Dict[str, Any]:
        """The fields that were given (None means not given), after rejecting unknown names."""
        names = [f.name for f in self.fields]
        for key in values:
            if key not in names:
                raise TaskclusterTopicExchangeFailure(
                    f"{key!r} is not a routing-key field of {self._label}.{did_you_mean(str(key), names)} "
                    f"Valid fields: {', '.join(names)}")
        return {k: v for k, v in values.items() if v is not None}

    def _word(self, field: RoutingKeyField, value: Any) -> str:
        """One given value as routing-key text, checked against the field's rules."""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self._field_failure(field, f"must be a string or an integer (got {type(value).__name__} {value!r})")
        text = str(value)
        if not text:
            raise self._field_failure(field, "must not be empty (got '')")
        if "." in text and not field.multiple_words:
            raise self._field_failure(field, f"is a single routing-key word and cannot contain '.' (got {text!r})")
        if field.constant is not None and text != field.constant:
            raise self._field_failure(field, f"is the constant {field.constant!r} (got {text!r})")
        return text

    def _pattern_word(self, field: RoutingKeyField, value: Any) -> str:
        if value is not None:
            return self._word(field, value)
        if field.constant is not None:
            return field.constant
        return "#" if field.multiple_words else "*"

    def _key_word(self, field: RoutingKeyField, value: Any) -> str:
        if value is None:
            return field.constant if field.constant is not None else ABSENT
        text = self._word(field, value)
        if "*" in text or "#" in text:
            raise self._field_failure(field, f"cannot contain '*' or '#' in a routing key (got {text!r})")
        return text


class _ExchangeAttribute:
    """An exchange on a generated class: the reference's prefix on the class, the instance's
    `exchangePrefix` on an instance."""

    def __init__(self, exchange: Exchange, suffix: str):
        self.exchange = exchange
        self.suffix = suffix
        self.__doc__ = exchange.description

    def __get__(self, obj: Optional["BaseEvents"], owner: type) -> Exchange:
        if obj is None:
            return self.exchange
        full = full_exchange_name(obj.exchangePrefix, self.suffix)
        if full == self.exchange.exchange:
            return self.exchange
        return self.exchange.with_exchange(full)


def _no_exchange(events: type, name: str) -> AttributeError:
    """The AttributeError for a name that is not an exchange of `events` (a generated class)."""
    names = [entry.name for entry in events.reference.entries]
    return AttributeError(f"{name!r} is not an exchange of {events.__name__}.{did_you_mean(name, names)} "
                          f"Exchanges: {', '.join(names)}")


class _EventsType(type):
    """The type of the generated classes: a misspelt exchange, such as `QueueEvents.taskComplete`,
    is an AttributeError that names the closest one."""

    # Hidden from type checkers, for which an attribute missing from the static view must be an error.
    if not TYPE_CHECKING:
        def __getattr__(cls, name: str) -> Any:
            if name.startswith("_") or "reference" not in vars(cls):
                raise AttributeError(name)
            raise _no_exchange(cls, name)


class BaseEvents(metaclass=_EventsType):
    """Base of the generated `*Events` classes; takes options like the official client.

    Example:
        >>> from tcpulse import QueueEvents
        >>> QueueEvents(exchangePrefix="exchange/x/v1/").taskCompleted.exchange
        'exchange/x/v1/task-completed'
    """
    reference: Reference
    exchangePrefix: str

    def __init__(self, options: Optional[Mapping] = None, **kwoptions: Any):
        merged = {**dict(options or {}), **kwoptions}
        for key in merged:
            if key not in CLIENT_OPTIONS:
                raise TaskclusterTopicExchangeFailure(unknown_option(str(key), type(self).__name__))
        prefix = merged.get("exchangePrefix", self.reference.exchange_prefix)
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise TaskclusterTopicExchangeFailure(
                f"option 'exchangePrefix' of {type(self).__name__} must be a non-empty string "
                f"such as 'exchange/taskcluster-queue/v1/' (got {prefix!r})")
        self.exchangePrefix = prefix

    def __repr__(self) -> str:
        # Only the prefix: the options may hold credentials.
        return f"{type(self).__name__}(exchangePrefix={self.exchangePrefix!r})"

    if not TYPE_CHECKING:  # as on the type: a misspelt exchange must be a type error
        def __getattr__(self, name: str) -> Any:
            return getattr(type(self), name)  # a miss raises the class's did-you-mean error


def events_class(reference: Reference) -> type:
    """The generated class for one exchange reference, with one `Exchange` attribute per entry.

    Example:
        >>> from tcpulse.references import open_set
        >>> events_class(open_set("bundled").get("GithubEvents")).push.exchange
        'exchange/taskcluster-github/v1/push'
    """
    if reference.kind != "exchanges":
        raise InvalidReference(f"{reference.path}: {reference.name} is not an exchange reference")
    return _build_class(reference)


_RESERVED = set(dir(BaseEvents)) | set(BaseEvents.__annotations__)


@functools.lru_cache(maxsize=None)
def _build_class(reference: Reference) -> type:
    namespace: Dict[str, Any] = {
        "__doc__": "\n\n".join(p for p in (reference.title, reference.description) if p),
        "__module__": "tcpulse", "__qualname__": reference.name,
        "reference": reference, "exchangePrefix": reference.exchange_prefix,
    }
    for entry in reference.entries:
        if entry.name in _RESERVED:
            raise InvalidReference(f"{reference.path}: exchange name {entry.name!r} clashes with "
                                   f"an attribute every events class has")
        exchange = Exchange(
            service=reference.name, name=entry.name, fields=entry.routing_key,
            exchange=full_exchange_name(reference.exchange_prefix or "", entry.exchange),
            title=entry.title, description=entry.description,
            schema=schema_id(reference.service_name, entry.schema) if entry.schema else "")
        namespace[entry.name] = _ExchangeAttribute(exchange, entry.exchange)
    return _EventsType(reference.name, (BaseEvents,), namespace)


def class_exchanges(cls: type) -> List[Exchange]:
    """The exchanges of a generated class, in reference order.

    Example:
        >>> from tcpulse import HooksEvents
        >>> [ex.name for ex in class_exchanges(HooksEvents)]
        ['hookCreated', 'hookUpdated', 'hookDeleted']
    """
    return [getattr(cls, entry.name) for entry in cls.reference.entries]


def exchanges(refset: Optional[ReferenceSet] = None) -> List[Exchange]:
    """Every exchange of every exchanges reference of a set (default: the active one), in
    manifest and entry order.

    Example:
        >>> any(ex.name == "taskCompleted" for ex in exchanges())
        True
    """
    return list(_registry(refset or active_set())[0].values())


@functools.lru_cache(maxsize=None)
def _registry(refset: ReferenceSet) -> Tuple[Dict[str, Exchange], Dict[str, Exchange]]:
    by_dotted: Dict[str, Exchange] = {}
    for reference in refset.references("exchanges"):
        for ex in class_exchanges(events_class(reference)):
            by_dotted[f"{ex.service}.{ex.name}"] = ex
    return by_dotted, {ex.exchange: ex for ex in by_dotted.values()}


def exchange_named(full_name: str, refset: Optional[ReferenceSet] = None) -> Optional[Exchange]:
    """The exchange of a set (default: the active one) with this full exchange name, or None.

    Example:
        >>> exchange_named("exchange/taskcluster-queue/v1/task-completed").name
        'taskCompleted'
    """
    return _registry(refset or active_set())[1].get(full_name)


def find_exchange(text: str, refset: Optional[ReferenceSet] = None) -> Exchange:
    """An exchange of a set (default: the active one) by 'Service.name' (e.g.
    'QueueEvents.taskCompleted') or by full exchange name; anything else is an error with the
    closest match.

    Example:
        >>> find_exchange("exchange/taskcluster-github/v1/push").service
        'GithubEvents'
    """
    by_dotted, by_full = _registry(refset or active_set())
    found = by_dotted.get(text) or by_full.get(text)
    if found is not None:
        return found
    services = sorted({ex.service for ex in by_dotted.values()})
    raise TaskclusterTopicExchangeFailure(
        f"{text!r} is not a known exchange (give 'Service.name' such as 'QueueEvents.taskCompleted', "
        f"or a full exchange name).{did_you_mean(text, [*by_dotted, *by_full])} "
        f"Exchange classes: {', '.join(services)}")


def exchange_name_of(text: str) -> str:
    """The full exchange name of 'Service.name'; a full name ('exchange/...') passes through
    even when no reference of the active set has it, such as a user's own exchange.

    Example:
        >>> exchange_name_of("QueueEvents.taskFailed"), exchange_name_of("exchange/mine/v1/done")
        ('exchange/taskcluster-queue/v1/task-failed', 'exchange/mine/v1/done')
    """
    return text if text.startswith("exchange/") else find_exchange(text).exchange
