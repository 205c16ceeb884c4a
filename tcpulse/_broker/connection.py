"""Which broker to talk to, as whom, and the kombu Connection for it.

Owns: resolving the broker per the contract (an explicit URL, else PULSE_URL, else
PULSE_USERNAME/PULSE_PASSWORD with PULSE_HOST over amqps on 5671, else the local guest broker),
the Pulse user name that prefixes queue names, a redacted form of the URL for logs and reprs
(`redact_url`, which also serves the error messages about URLs too malformed to parse), and building the kombu Connection (heartbeats on). `memory://` selects the embedded broker
(`tcpulse._broker.broker:Transport`); its path names a virtual host of its own (`memory:///a` and
`memory:///b` share nothing).

Query parameters are read as kombu reads them from a URL (`tcpulse._broker.urlquery`):
`amqp://u:p@pulse.mozilla.org:5671/?ssl=1`, Treeherder's documented PULSE_URL, is TLS to vhost '/'.

Passwords may hold '/', '@' and '%': in a URL they may be percent-encoded, or given raw
(the user part then ends at the last '@'). The password never appears in a repr, a log line or
an error message, however malformed the URL: errors quote `redact_url(url)`, never the URL.

Several nodes of one cluster: URLs separated by ';' (kombu's failover syntax,
`amqp://u:p@a//;amqp://u:p@b//`); a ';' starts a new URL only before a scheme, so a raw password
may hold one. The address is the first node's, and `nodes` lists them all in order: whoever
connects tries them in turn (each with its own TLS server name, which kombu's own failover
would keep from the first). They must all name the same user: queue names depend on it.

Imports kombu only inside `BrokerAddress.connection()` and `broker_errors()`; never imports requests or
the listener.

Example:
    >>> a = resolve_broker("amqp://alice:s%2Fecret@127.0.0.1:5672//", environ={})
    >>> a.user, a.password, a.redacted
    ('alice', 's/ecret', 'amqp://alice:***@127.0.0.1:5672//')
"""
import os
import re
from typing import Any, Mapping, Optional, Tuple, Union
from urllib.parse import unquote

from tcpulse._broker.urlquery import UrlQuery

DEFAULT_URL = "amqp://guest:guest@localhost:5672//"
PULSE_HOST = "pulse.mozilla.org"
MEMORY_TRANSPORT = "tcpulse._broker.broker:Transport"
HEARTBEAT = 30  # seconds we ask for; the broker may negotiate lower
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_NEXT_URL = re.compile(r"\s*;\s*(?=[a-z][a-z0-9+.-]*://)", re.IGNORECASE)
# A scheme and the slashes after it, however many a typo left ('amqp:/', 'amqp:///').
_SCHEME_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]*:/+", re.IGNORECASE)
_PORT_AND_PATH = re.compile(r"\d*(/.*)?", re.DOTALL)
_SPLIT_HINT = ("; ';' followed by 'name://' separates broker URLs, so a password holding that must "
               "percent-encode the ';' as %3B")


class BrokerAddress:
    """Where and as whom to connect; `str()` and `repr()` hide the password, and there is no
    `vars()` (slots) for a generic dump to find it in.

    Example:
        >>> BrokerAddress("amqps", "pulse.mozilla.org", 5671, "/", "bob", "pw")
        BrokerAddress('amqps://bob:***@pulse.mozilla.org:5671//')
    """

    __slots__ = ("scheme", "host", "port", "vhost", "user", "password", "nodes", "query")

    def __init__(self, scheme: str, host: str, port: Optional[int], vhost: str,
                 user: str, password: str, query: Optional[UrlQuery] = None) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.vhost = vhost
        self.user = user
        self.password = password
        self.query = query or UrlQuery("")
        self.nodes: Tuple["BrokerAddress", ...] = (self,)

    @property
    def is_memory(self) -> bool:
        return self.scheme == "memory"

    @property
    def redacted(self) -> str:
        """The URL (every node's, ';'-separated) with `***` for the password."""
        return ";".join(node._redacted_node() for node in self.nodes)

    @property
    def tls(self) -> bool:
        """amqps://, or amqp:// with `?ssl=1` (or any `ssl_*` option), as kombu reads it."""
        return self.scheme == "amqps" or self.query.tls

    def _redacted_node(self) -> str:
        if self.is_memory:
            return "memory://" if self.vhost == "/" else f"memory:///{self.vhost}"
        secret = ":***" if self.password else ""
        return f"{self.scheme}://{self.user}{secret}@{self.host}:{self.port}/{self.vhost}{self.query.suffix}"

    def __repr__(self) -> str:
        return f"BrokerAddress({self.redacted!r})"

    def __str__(self) -> str:
        return self.redacted

    def _tls(self) -> Any:
        # The server name gives SNI and turns on hostname checking against the certificate
        # (py-amqp checks neither with a bare ssl=True).
        return self.query.ssl_options(self.host) if self.tls else False

    def _kombu_url(self) -> str:
        # For kombu's own failover list only (it decodes these): never printed or logged.
        return (f"{self.scheme}://{_quote(self.user)}:{_quote(self.password)}@{self.host}:{self.port}/"
                f"{_quote(self.vhost)}{self.query.suffix}")

    def connection(self, heartbeat: Optional[int] = None, **options: Any) -> Any:
        """A new (not yet connected) kombu Connection to this broker; `heartbeat` seconds
        (default HEARTBEAT, read at call time)."""
        import kombu

        if self.is_memory:
            # A hostname keeps kombu from warning "No hostname was supplied" on every start.
            return kombu.Connection("memory://localhost/", transport=MEMORY_TRANSPORT,
                                    virtual_host=self.vhost, **options)
        from tcpulse._listen.wire import TRANSPORT_OPTIONS

        if heartbeat is None:
            heartbeat = self.query.heartbeat if self.query.heartbeat is not None else HEARTBEAT
        options = {**self.query.connection_options(), **options}
        # py-amqp reads deliveries through tcpulse's tolerant frame handler: a message it cannot
        # decode stops no listener, tail, dead-letter listing or migration (tcpulse._listen.wire).
        options["transport_options"] = {**TRANSPORT_OPTIONS, **options.get("transport_options", {})}
        return kombu.Connection(hostname=self.host, port=self.port, userid=self.user,
                                password=self.password, virtual_host=self.vhost,
                                ssl=self._tls(), transport="pyamqp", heartbeat=heartbeat, **options)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def connect_any(address: BrokerAddress, **options: Any) -> Any:
    """A connected kombu Connection to the first node of `address` that answers (one attempt
    each, in order); the last node's error when none does. For short errands: publish, record,
    dead letters, maintenance.

    Example (needs a broker):
        >>> connect_any(resolve_broker("amqp://u:p@down:5672//;amqp://u:p@up:5672//"))   # doctest: +SKIP
        <Connection: amqp://u:**@up:5672// at 0x...>
    """
    nodes = address.nodes
    for index, node in enumerate(nodes):
        # kombu's failover list (`maybe_switch_next`) for whoever reconnects later: the nodes after
        # this one, then this one.
        later = [n._kombu_url() for n in (*nodes[index + 1:], *nodes[:index + 1])] if len(nodes) > 1 else None
        connection = node.connection(alternates=later, **options)
        try:
            connection.ensure_connection(max_retries=0)
            return connection
        except Exception:
            connection.release()
            if node is nodes[-1]:
                raise
    raise AssertionError("an address has at least one node")


def lost_connection_errors() -> Tuple[type, ...]:
    """The exceptions that mean the connection went away (a network error, the broker closing it
    with CONNECTION_FORCED, ...), as opposed to the broker refusing what was asked: after these,
    reconnecting may help; after a refusal it will not.

    Example:
        >>> ConnectionResetError in lost_connection_errors() or issubclass(ConnectionResetError, lost_connection_errors())
        True
    """
    import amqp.exceptions

    return (OSError, amqp.exceptions.RecoverableConnectionError)


def broker_errors() -> Tuple[type, ...]:
    """The exceptions a broker operation may raise (kombu and py-amqp load only when asked).

    Example:
        >>> OSError in broker_errors()
        True
    """
    import amqp.exceptions
    import kombu.exceptions

    return (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError)


def resolve_broker(broker: Union[str, BrokerAddress, None] = None,
                   environ: Optional[Mapping[str, str]] = None, source: Optional[str] = None) -> BrokerAddress:
    """The broker to use: `broker` (a URL, or an address resolved already), else PULSE_URL,
    else PULSE_USERNAME/PULSE_PASSWORD (+ PULSE_HOST) over amqps, else the local guest broker.
    A bad URL is a ValueError that starts with where it came from: `source` (how the caller
    names `broker`, such as '--broker'; nothing when None) or PULSE_URL.

    Example:
        >>> resolve_broker(environ={"PULSE_USERNAME": "u", "PULSE_PASSWORD": "p"}).redacted
        'amqps://u:***@pulse.mozilla.org:5671//'
        >>> resolve_broker(environ={"PULSE_URL": "amqp//u:pw@h"})
        Traceback (most recent call last):
        ...
        ValueError: PULSE_URL: broker URL must look like amqp://user:password@host:5672//, amqps://... or memory:// (got 'amqp//u:***@h')
    """
    env = os.environ if environ is None else environ
    if isinstance(broker, BrokerAddress):
        return broker
    if broker:
        return _parse_from(broker, source)
    if env.get("PULSE_URL"):
        return _parse_from(env["PULSE_URL"], "PULSE_URL")
    if env.get("PULSE_USERNAME") or env.get("PULSE_PASSWORD"):
        return _from_credentials(env)
    return parse_url(DEFAULT_URL)


def _parse_from(urls: str, source: Optional[str]) -> BrokerAddress:
    try:
        return parse_urls(urls)
    except ValueError as exc:
        if source is None:
            raise
        raise ValueError(f"{source}: {exc}") from None


def _from_credentials(env: Mapping[str, str]) -> BrokerAddress:
    missing = [k for k in ("PULSE_USERNAME", "PULSE_PASSWORD") if not env.get(k)]
    if missing:
        given = "PULSE_USERNAME" if missing[0] == "PULSE_PASSWORD" else "PULSE_PASSWORD"
        raise ValueError(f"{missing[0]} is not set but {given} is: set both (or PULSE_URL) to connect to Pulse")
    return BrokerAddress("amqps", env.get("PULSE_HOST") or PULSE_HOST, 5671, "/",
                         env["PULSE_USERNAME"], env["PULSE_PASSWORD"])


def parse_urls(text: str) -> BrokerAddress:
    """Parse one URL, or several separated by ';' (nodes of one cluster, tried in order).

    Example:
        >>> a = parse_urls("amqp://u:p;w@a:5672//;amqp://u:p;w@b:5673//")
        >>> a.redacted, a.nodes[1].redacted, a.nodes[1].password
        ('amqp://u:***@a:5672//;amqp://u:***@b:5673//', 'amqp://u:***@b:5673//', 'p;w')
    """
    urls = [url for url in _NEXT_URL.split(text) if url.strip()] or [text]
    if len(urls) == 1:
        return parse_url(text)
    # A piece after the first may be the tail of a raw password holding ';name://': an error
    # quotes the whole text redacted as one URL, never a piece of it.
    shown = redact_url(text)
    nodes = tuple(parse_url(url, shown=shown, hint=_SPLIT_HINT) for url in urls)
    if any(node.is_memory for node in nodes):
        raise ValueError("memory:// is one in-process broker: it cannot be one of several broker URLs "
                         f"(got {len(nodes)} URLs separated by ';')")
    users = {node.user for node in nodes}
    if len(users) > 1:
        raise ValueError(f"all broker URLs separated by ';' must name the same user, as queue names depend on it "
                         f"(got {len(users)} different users){_SPLIT_HINT}")
    cluster = parse_url(urls[0])  # the first node's address, standing for them all
    cluster.nodes = nodes
    return cluster


def parse_url(url: str, shown: Optional[str] = None, hint: str = "") -> BrokerAddress:
    """Parse an amqp://, amqps:// or memory:// URL whose password may be raw or percent-encoded;
    errors quote `shown` (default: the URL redacted) and end with `hint`.

    Example:
        >>> parse_url("amqp://u:p/@%aa@h:1/vh").password
        'p/@%aa'
        >>> parse_url("amqp://u:p@pulse.mozilla.org:5671/?ssl=1").redacted
        'amqp://u:***@pulse.mozilla.org:5671//?ssl=1'
        >>> parse_url("amqp//alice:pw@h:5672")
        Traceback (most recent call last):
        ...
        ValueError: broker URL must look like amqp://user:password@host:5672//, amqps://... or memory:// (got 'amqp//alice:***@h:5672')
    """
    shown = redact_url(url) if shown is None else shown
    found = _URL.match(url.strip())
    if not found or found["scheme"].lower() not in (*DEFAULT_PORTS, "memory"):
        raise ValueError("broker URL must look like amqp://user:password@host:5672//, amqps://... "
                         f"or memory:// (got {shown!r}){hint}")
    scheme, rest = found["scheme"].lower(), found["rest"]
    if scheme == "memory":
        return BrokerAddress("memory", "", None, unquote(rest.partition("/")[2]) or "/", "guest", "")
    userinfo, _, hostpart = rest.rpartition("@")
    user, _, password = userinfo.partition(":")
    hostpart, _, query = hostpart.partition("?")
    hostport, _, vhost = hostpart.partition("/")
    host, _, port = hostport.partition(":")
    if port and not port.isdigit():
        # Without '@' the text after the colon may be a password whose host was left out.
        hint = hint or ("" if userinfo else "; a password needs '@host' after it: amqp://user:password@host:5672//")
        raise ValueError(f"broker URL port must be a number (got {shown!r}){hint}")
    return BrokerAddress(scheme, host or "localhost", int(port) if port else DEFAULT_PORTS[scheme],
                         unquote(vhost) or "/", _decode(user) or "guest",
                         _decode(password) if userinfo else "guest", UrlQuery(query))


def _decode(text: str) -> str:
    # A raw password may contain '/', '@' or a lone '%': only decode text that is a clean
    # percent-encoding, so that both spellings of one password work.
    raw_marks = any(c in text for c in "/@") or "%" in _PERCENT_ESCAPE.sub("", text)
    return text if raw_marks else unquote(text)


def redact_url(text: str) -> str:
    """`text`, given as a broker URL, with whatever could be a password replaced by `***`;
    for any text at all, parseable or not (errors about a malformed URL quote this).

    Everything between the first ':' after the scheme and the last '@' may be a password; with
    no '@', so may whatever follows a colon that is not a port number.

    Example:
        >>> [redact_url(u) for u in ("amqp://u:pw@h//", "amqp//u:pw@h", "u:pw@h", "amqp://u:pw", "amqp://h:5672//")]
        ['amqp://u:***@h//', 'amqp//u:***@h', 'u:***@h', 'amqp://u:***', 'amqp://h:5672//']
    """
    head, at, tail = text.rpartition("@")
    scheme = _SCHEME_PREFIX.match(head if at else text)
    prefix = scheme.group(0) if scheme else ""
    if at:
        user, colon, _ = head[len(prefix):].partition(":")
        return f"{prefix}{user}{':***' if colon else ''}@{tail}"
    host, colon, after = text[len(prefix):].partition(":")
    if colon and not _PORT_AND_PATH.fullmatch(after):
        return f"{prefix}{host}:***"
    return text
