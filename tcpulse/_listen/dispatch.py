"""Which handlers a message goes to: AMQP topic matching, the handler registry, and `Event`.

Owns: `topic_matches` (RabbitMQ's topic rules), turning the arguments of `Listener.on` into
bindings, the ordered registry of handlers with their bindings, `select` (each matching handler
once, in registration order, on the primary key and every CC'd key), and the `Event` a handler
receives. The listener and the testing harness both dispatch through this module, so a message
reaches the same handlers live and in tests.

Pure module: imports only the standard library, `tcpulse._api.exchanges`, `tcpulse.errors` and
`tcpulse._listen.naming` (which names a handler's module), never kombu or requests.

Example:
    >>> from tcpulse._api.exchanges import Binding
    >>> registry = Registry()
    >>> h = registry.add(print, [Binding("exchange/x", "primary.#")])
    >>> [x.name for x in registry.select("exchange/x", "primary", ())]
    ['builtins.print']
"""
import functools
import inspect
import re
from collections.abc import Mapping
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Sequence, Tuple, TypeVar

from tcpulse.errors import TaskclusterTopicExchangeFailure
from tcpulse._api.exchanges import Binding, Exchange, exchange_named
from tcpulse._listen.naming import module_name
from tcpulse._ops.metrics import readable

ROUTE_PREFIX = "route."
RESERVED = "reserved"  # the routing-key field Taskcluster keeps for later use


def _words(text: str) -> Tuple[str, ...]:
    # RabbitMQ treats the empty key as zero words, not as one empty word.
    return tuple(text.split(".")) if text else ()


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> Tuple[str, ...]:
    return _words(pattern)


def topic_matches(pattern: str, key: str) -> bool:
    """Whether routing key `key` matches binding `pattern`: `*` is exactly one word,
    `#` zero or more words, anything else must equal the word in that position.

    Example:
        >>> topic_matches("a.#.b", "a.b"), topic_matches("a.*", "a")
        (True, False)
    """
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


T = TypeVar("T")


class Event(Generic[T]):
    """One message as a handler sees it; `Event[T]` for type checkers, where T is the body's
    TypedDict (`def completed(event: Event[TaskCompletedMessage])` gets `event.body` checked).

    `cc` is every entry of the CC header as received; `routes` are those starting with 'route.',
    without that prefix; `fields` is the primary key parsed with the exchange's reference
    (computed on first use; {} for an exchange tcpulse has no reference for), without the
    `reserved` words Taskcluster keeps for later; `attempt` is 1 on the first delivery.

    Example:
        >>> e = Event({"status": {}}, "exchange/taskcluster-queue/v1/task-completed",
        ...           "primary.t1.0.w.p.wt.pr.s.g._", cc=["route.index.a", "other"])
        >>> e.cc, e.routes, e.fields["taskId"], "reserved" in e.fields, e.attempt
        (['route.index.a', 'other'], ['index.a'], 't1', False, 1)
    """

    __slots__ = ("body", "exchange", "routing_key", "cc", "routes", "redelivered", "attempt",
                 "headers", "_source", "_fields")

    body: T

    def __init__(self, body: T, exchange: str, routing_key: str, cc: Sequence[str] = (),
                 redelivered: bool = False, attempt: int = 1,
                 headers: Optional[Mapping] = None, source: Optional[Exchange] = None) -> None:
        self.body = body
        self.exchange = exchange
        self.routing_key = routing_key
        self.cc = list(cc)
        self.routes = [r[len(ROUTE_PREFIX):] for r in cc if r.startswith(ROUTE_PREFIX)]
        self.redelivered = redelivered
        self.attempt = attempt
        self.headers = dict(headers or {})
        self._source = source
        self._fields: Optional[Dict[str, Optional[str]]] = None

    @property
    def fields(self) -> Dict[str, Any]:
        # Values are strings, or None for an optional field sent as '_'. Typed Any rather than
        # Optional[str] so that `queue.task(event.fields["taskId"])` (a required field, never
        # None) type-checks without a cast.
        if self._fields is None:
            source = self._source or exchange_named(self.exchange)
            parsed = source.parse(self.routing_key) if source is not None else {}
            # Taskcluster reserves the key's last words for later use; they are never a field to read.
            self._fields = {name: value for name, value in parsed.items() if name != RESERVED}
        return self._fields

    def __repr__(self) -> str:
        return (f"Event(exchange={self.exchange!r}, routing_key={self.routing_key!r}, "
                f"routes={self.routes!r}, attempt={self.attempt})")


# An exchange with at most this many patterns, none with more than one '#', is matched with one
# regular expression per pattern (a few microseconds for a Taskcluster key, several times less
# than a walk of the word tree); more patterns use the tree, whose cost does not grow with them.
FEW_PATTERNS = 16


def _pattern_regex(pattern: str) -> Optional[Callable[[str], Any]]:
    """A matcher of `pattern` for '.' + key (every word preceded by a dot: '' is zero words), or
    None for a pattern with more than one '#', whose backtracking would grow with the key.

    Example:
        >>> match = _pattern_regex("a.#.b")
        >>> bool(match(".a.b")), bool(match(".a.x.y.b")), bool(match(".a.b.c"))
        (True, True, False)
    """
    tokens = _compile(pattern)
    if tokens.count("#") > 1:
        return None
    parts = [r"(?:\.[^.]*)*" if t == "#" else r"\.[^.]*" if t == "*" else r"\." + re.escape(t) for t in tokens]
    return re.compile("".join(parts)).fullmatch


class _Trie:
    """The binding patterns of one exchange as a tree of words, as RabbitMQ routes them: a key is
    matched against every pattern in one walk, instead of pattern by pattern (with hundreds of
    bindings, per-pattern matching dominated a message's cost).

    The walk keeps the set of nodes the words so far can have reached (an NFA over the tree): a
    word moves each node to its child for that word and to its `*` child; a node entered through
    `#` (`loops`) also stays where it is, since `#` takes any number of words; and reaching a node
    also reaches its `#` child at once, since `#` may take none."""

    __slots__ = ("words", "star", "hash", "ends", "loops", "closure")

    def __init__(self, loops: bool = False) -> None:
        self.words: Dict[str, "_Trie"] = {}
        self.star: Optional["_Trie"] = None
        self.hash: Optional["_Trie"] = None
        self.ends: List[int] = []
        self.loops = loops
        self.closure: List["_Trie"] = [self]

    def add(self, pattern: str, value: int) -> None:
        node = self
        for token in _compile(pattern):
            if token == "*":
                node.star = node.star or _Trie()
                node = node.star
            elif token == "#":
                node.hash = node.hash or _Trie(loops=True)
                node = node.hash
            else:
                node = node.words.setdefault(token, _Trie())
        node.ends.append(value)

    def seal(self) -> None:
        """Once every pattern is added: give each node its `closure` (itself and the nodes its
        `#` edges reach without taking a word), so that the walk does not recompute it."""
        closure, node = [], self
        while node is not None:
            closure.append(node)
            node = node.hash
        self.closure = closure
        for child in (*self.words.values(), self.star, self.hash):
            if child is not None:
                child.seal()

    def collect(self, key: str, found: set) -> None:
        """Add to `found` the value of every pattern that matches `key` (after `seal`)."""
        active = self.closure
        for word in _words(key):
            reached: List[_Trie] = []
            for node in active:
                child = node.words.get(word)
                if child is not None:
                    reached += child.closure
                if node.star is not None:
                    reached += node.star.closure
                if node.loops:
                    reached.append(node)
            if not reached:
                return
            # Several '#' can reach one node many ways: keep each once.
            active = reached if len(reached) == 1 else list({id(n): n for n in reached}.values())
        for node in active:
            found.update(node.ends)


class Handler:
    """A registered handler: the plain function, its stable name (`display`: as logs and metrics
    show it, see `tcpulse._ops.metrics.readable`) and its bindings; `is_async` when it is an `async def` function (or
    an object with an `async def __call__`), which the listener awaits on its event loop instead
    of calling on a thread.

    Example:
        >>> Handler(print, "builtins.print", ()).name
        'builtins.print'
    """

    __slots__ = ("func", "name", "bindings", "is_async")

    def __init__(self, func: Callable[[Event], Any], name: str, bindings: Tuple[Binding, ...]):
        self.func = func
        self.name = name
        self.bindings = bindings
        self.is_async = inspect.iscoroutinefunction(func) or (
            not inspect.isroutine(func) and inspect.iscoroutinefunction(getattr(func, "__call__", None)))

    @property
    def display(self) -> str:
        return readable(self.name)

    def __repr__(self) -> str:
        return f"<Handler {self.name} ({len(self.bindings)} bindings)>"


class Registry:
    """Handlers in registration order; selects the ones a message goes to.

    Example:
        >>> from tcpulse._api.exchanges import Binding
        >>> r = Registry()
        >>> _ = r.add(len, [Binding("exchange/x", "route.a.#")])
        >>> [h.name for h in r.select("exchange/x", "primary.k", ["route.a.b"])]
        ['builtins.len']
    """

    def __init__(self) -> None:
        self.handlers: List[Handler] = []
        self._by_func: Dict[Any, Handler] = {}
        self._tries: Dict[str, _Trie] = {}
        self._few: Dict[str, List[Tuple[Callable[[str], Any], int]]] = {}
        self._sources: Dict[str, Optional[Exchange]] = {}
        self._names: frozenset = frozenset()

    def add(self, func: Callable[[Event], Any], bindings: Iterable[Binding]) -> Handler:
        """Register `func` for `bindings`; the same function registered again keeps its place
        and gains the new bindings, so it still runs once per message."""
        _check_handler(func)
        old = self._by_func.get(func)
        new = tuple(bindings)
        if old is not None:
            old.bindings = tuple(dict.fromkeys(old.bindings + new))
            handler = old
        else:
            handler = Handler(func, self._unique_name(func), tuple(dict.fromkeys(new)))
            self.handlers.append(handler)
            self._by_func[func] = handler
        self._reindex()
        return handler

    def _unique_name(self, func: Callable) -> str:
        # Names travel in retry headers, so two functions must never share one; a clash (e.g.
        # closures made in a loop) gets a suffix that is stable for a stable registration order.
        base = f"{module_name(func)}.{getattr(func, '__qualname__', repr(func))}"
        taken = {h.name for h in self.handlers}
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}[{n}]"
        return name

    def _reindex(self) -> None:
        self._tries, self._few = {}, {}
        self._names = frozenset(h.name for h in self.handlers)
        patterns: Dict[str, List[Tuple[str, int]]] = {}
        for position, handler in enumerate(self.handlers):
            for binding in handler.bindings:
                self._tries.setdefault(binding.exchange, _Trie()).add(binding.routing_key_pattern, position)
                patterns.setdefault(binding.exchange, []).append((binding.routing_key_pattern, position))
        for trie in self._tries.values():
            trie.seal()
        for exchange, entries in patterns.items():
            matchers = [(_pattern_regex(pattern), position) for pattern, position in entries]
            if len(matchers) <= FEW_PATTERNS and all(match is not None for match, _ in matchers):
                self._few[exchange] = matchers  # type: ignore[assignment]
        self._sources = {}
        for binding in self.bindings():
            if binding.source is not None:
                self._sources.setdefault(binding.exchange, binding.source)

    def select(self, exchange: str, routing_key: str, cc: Sequence[str] = (),
               only: Optional[Sequence[str]] = None) -> List[Handler]:
        """The handlers whose bindings match the primary key or any CC'd key, each once, in
        registration order. `only` keeps just the handlers with those names (a retry re-runs the
        ones that failed), unless one of them is no longer registered (renamed, or its script
        renamed): nothing tells which handler took over its work, so every matching handler runs
        (the caller logs it, see `unknown`).

        Example:
            >>> from tcpulse._api.exchanges import Binding
            >>> r = Registry(); _ = r.add(len, [Binding("exchange/x", "#")]); _ = r.add(abs, [Binding("exchange/x", "#")])
            >>> [h.name for h in r.select("exchange/x", "k", only=["builtins.abs"])]
            ['builtins.abs']
            >>> [h.name for h in r.select("exchange/x", "k", only=["app.boom"])]
            ['builtins.len', 'builtins.abs']
        """
        few = self._few.get(exchange)
        if few is not None:
            dotted = ["." + key if key else "" for key in (routing_key, *cc)]
            found = {position for match, position in few if any(match(key) for key in dotted)}
        else:
            trie = self._tries.get(exchange)
            if trie is None:
                return []
            found = set()
            for key in (routing_key, *cc):
                trie.collect(key, found)
        chosen = [self.handlers[position] for position in sorted(found)]
        if only is not None and not self.unknown(only):
            chosen = [h for h in chosen if h.name in only]
        return chosen

    def unknown(self, names: Sequence[str]) -> List[str]:
        """The names among `names` (handlers a retry or dead letter recorded) no handler has now.

        Example:
            >>> Registry().unknown(["__main__.boom"])
            ['__main__.boom']
        """
        return [name for name in names if name not in self._names]

    def bindings(self) -> List[Binding]:
        """Every (exchange, pattern) pair once, in registration order."""
        return list(dict.fromkeys(b for h in self.handlers for b in h.bindings))

    def source(self, exchange: str) -> Optional[Exchange]:
        """The Exchange a registered binding on `exchange` came from (for parsing fields), else
        the reference's exchange of that name; looked up once per exchange (a message's cost)."""
        if exchange not in self._sources:
            self._sources[exchange] = exchange_named(exchange)
        return self._sources[exchange]


def _check_handler(func: Any) -> None:
    if not callable(func):
        raise TypeError(f"a handler must be a callable taking one event (got {type(func).__name__} {func!r})")
    try:
        inspect.signature(func).bind(None)
    except TypeError:
        raise TypeError(f"handler {getattr(func, '__qualname__', func)!r} must accept exactly one "
                        f"positional argument, the event (its signature is {inspect.signature(func)})") from None
    except ValueError:
        pass  # no signature to inspect (some builtins): trust the caller


def bindings_for(targets: Sequence[Any], route: Any = None, fields: Optional[Mapping] = None) -> List[Binding]:
    """The bindings `Listener.on(*targets, route=..., **fields)` stands for.

    Each target is an `Exchange` (called with `fields`, or bound on its CC'd `route` pattern(s)),
    a `Binding`, or an official-client dict {'exchange', 'routingKeyPattern'}.

    Example:
        >>> from tcpulse._api.exchanges import find_exchange
        >>> [b.routing_key_pattern for b in bindings_for([find_exchange("QueueEvents.taskDefined")],
        ...                                              route="index.project.#")]
        ['route.index.project.#']
    """
    fields = dict(fields or {})
    routes = [route] if isinstance(route, str) else list(route or ())
    if not targets:
        raise TypeError("on() needs at least one exchange or binding, e.g. "
                        "on(QueueEvents.taskCompleted, taskGroupId='...')")
    if routes and fields:
        raise TypeError(f"on() takes either route= (a CC'd route pattern) or routing-key fields, "
                        f"not both (got route={route!r} and fields {sorted(fields)})")
    result: List[Binding] = []
    for target in targets:
        result.extend(_target_bindings(target, routes, fields))
    return result


def _target_bindings(target: Any, routes: List[str], fields: Dict[str, Any]) -> List[Binding]:
    if isinstance(target, Exchange):
        if routes:
            return [Binding(target.exchange, _route_pattern(r, target), target) for r in routes]
        return [target(**fields)]
    extra = "route=" if routes else ", ".join(sorted(fields))
    if isinstance(target, Binding) or _looks_like_binding(target):
        if extra:
            raise TypeError(f"{extra} apply only to an Exchange; the binding {dict(target)} "
                            "already has its routing-key pattern")
        if isinstance(target, Binding):
            return [target]
        return [Binding(target["exchange"], target["routingKeyPattern"])]
    raise TypeError(f"on() takes Exchange or Binding objects (e.g. QueueEvents.taskCompleted), "
                    f"got {type(target).__name__} {target!r}")


def _looks_like_binding(target: Any) -> bool:
    return isinstance(target, Mapping) and set(target) == {"exchange", "routingKeyPattern"}


def _route_pattern(route: Any, exchange: Exchange) -> str:
    if not isinstance(route, str) or not route:
        raise TaskclusterTopicExchangeFailure(
            f"route for {exchange.service}.{exchange.name} ({exchange.exchange}) must be a "
            f"non-empty pattern such as 'index.project.#' (got {route!r})")
    return ROUTE_PREFIX + route
