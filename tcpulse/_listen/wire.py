"""A listener's deliveries as read off the wire: no message can stop the listener, and no copy
it publishes is too big for the wire.

Owns, in one place:
- `frame_handler`, the py-amqp frame handler of every tcpulse connection (handed to py-amqp's
  `Connection(frame_handler=...)` through kombu's transport options, `TRANSPORT_OPTIONS`). A
  delivery whose routing key, properties or headers py-amqp cannot decode (invalid UTF-8, a
  timestamp out of range, an array nested thousands deep) still arrives, with the unreadable
  part replaced or left out and a mark (the property `outcome.UNREADABLE`) that says what could
  not be read; the listener dead-letters it with that reason. The method frame carries the delivery tag, so the
  message can always be settled.
- the refusal of compressed bodies (`refuse_compression`): kombu inflates a body whose headers
  name a `compression` before anyone can look at its size (242 bytes of bzip2 become 300 MiB).
  The header is taken off before kombu sees it, and the message is marked, so its raw bytes are
  dead-lettered and never inflated (a dead-letter listing does not inflate them either).
- the content encodings py-amqp may decode a body with (`_check_encoding`): a linear-time text
  encoding, never whatever codec a publisher names (some take quadratic time).
- `fit_headers`: the headers of a retry or dead-letter copy shrunk to fit in one frame (the
  broker closes a connection that sends a bigger one; the message comes back and the listener
  would loop).

Why a frame handler rather than catching errors around `drain_events`: py-amqp decodes inside
its frame loop; an error there leaves the loop expecting a content header that was already read
(so the connection is lost) and the message unsettled at the head of the queue (so every restart
dies on it again). Why it costs nothing on the good path: py-amqp's own decoding runs first; only
what raises is read again, field by field, here.

Imports amqp (kombu's dependency); never kombu, requests or the listener.

Example (a header frame whose content type is not UTF-8, then its body frame):
    >>> import struct
    >>> delivered = []
    >>> on_frame = frame_handler(type("C", (), {"bytes_recv": 0})(), lambda *args: delivered.append(args))
    >>> deliver = struct.pack(">HH", 60, 60) + b"\\x03tag" + struct.pack(">Q", 7) + b"\\x00\\x01x\\x01k"
    >>> on_frame((1, 1, deliver)), on_frame((2, 1, struct.pack(">HHQH", 60, 0, 2, 0x8000) + b"\\x02\\xff!"))
    (False, False)
    >>> on_frame((3, 1, b"{}"))
    True
    >>> message = delivered[0][3]
    >>> message.properties["content_type"], message.properties[UNREADABLE]
    ('?!', "content_type b'\\\\xff!' is not UTF-8")
"""
import codecs
import json
import struct
from collections import defaultdict
from struct import unpack_from
from typing import Any, Callable, Dict, List, Optional, Tuple

from amqp import spec
from amqp.basic_message import Message
from amqp.exceptions import UnexpectedFrame
from amqp.serialization import dumps, loads

from tcpulse._listen.outcome import H_CC, H_FAILURES, H_REASON, OWN_HEADERS, UNREADABLE

H_DROPPED = "tcpulse-dropped"  # on a copy whose headers were shrunk to fit in one frame: what was left out
# Bytes of a content-header frame besides its property list: frame header and end (8), class,
# weight and body size (12), and room for every property but the headers (flags, two
# shortstrs of up to 256 bytes, expiration, delivery mode, ...).
HEADER_FRAME_OVERHEAD = 8 + 12 + 2 + 3 * 256 + 16
# Codecs (as `codecs.lookup` names them) py-amqp may decode a body with: linear-time text encodings.
TEXT_ENCODINGS = frozenset({"utf-8", "utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-32-be", "utf-32-le",
                            "ascii", "iso8859-1"})
TEXT_KEPT = 1000  # characters of each failure text kept in a copy shrunk to fit in one frame

_ARGUMENTS = {  # the content-carrying methods: their argument formats and names (py-amqp's spec)
    spec.Basic.Deliver: ("sLbss", ("consumer tag", "", "", "exchange", "routing key")),
    spec.Basic.GetOk: ("Lbssl", ("", "", "exchange", "routing key", "")),
    spec.Basic.Return: ("Bsss", ("", "reply text", "exchange", "routing key")),
}
# Basic properties in wire order: (flag, name, type); 's' shortstr, 'o' octet, 'L' long long,
# 'F' the headers table.
_PROPERTIES = ((0x8000, "content_type", "s"), (0x4000, "content_encoding", "s"), (0x2000, "application_headers", "F"),
               (0x1000, "delivery_mode", "o"), (0x0800, "priority", "o"), (0x0400, "correlation_id", "s"),
               (0x0200, "reply_to", "s"), (0x0100, "expiration", "s"), (0x0080, "message_id", "s"),
               (0x0040, "timestamp", "L"), (0x0020, "type", "s"), (0x0010, "user_id", "s"),
               (0x0008, "app_id", "s"), (0x0004, "cluster_id", "s"))
# Sizes of the fixed-size values a field table may hold (RabbitMQ's letters, as py-amqp reads them).
_FIXED = {"b": 1, "B": 1, "t": 1, "s": 2, "U": 2, "u": 2, "I": 4, "i": 4, "f": 4, "D": 5,
          "L": 8, "l": 8, "d": 8, "T": 8, "V": 0}

Callback = Callable[[int, Tuple[int, int], Any, Optional[Message]], Any]


def frame_handler(connection: Any, callback: Callback) -> Callable[[Tuple[int, int, Any]], bool]:
    """py-amqp's frame handler (method, content header, body and heartbeat frames to methods
    with their content), tolerant of what it cannot decode. Returns True once a method was
    handled, as py-amqp's does."""
    expected: Dict[int, int] = defaultdict(lambda: 1)
    partial: Dict[int, Message] = {}

    def on_frame(frame: Tuple[int, int, Any], unpack_from: Any = unpack_from, content: Any = _ARGUMENTS,
                 read_header: Any = _read_header) -> bool:  # locals, not globals: this runs 3 times a message
        frame_type, channel, buf = frame
        connection.bytes_recv += 1
        if frame_type not in (expected[channel], 8):
            raise UnexpectedFrame(f"Received frame {frame_type} while expecting type: {expected[channel]}")
        if frame_type == 1:
            method_sig = unpack_from(">HH", buf, 0)
            if method_sig in content:  # its content (header, then body frames) follows
                partial[channel] = Message(frame_method=method_sig, frame_args=buf)
                expected[channel] = 2
                return False
            callback(channel, method_sig, buf, None)
            return True
        if frame_type == 2:
            message = partial[channel]
            read_header(message, buf)
        elif frame_type == 3:
            message = partial[channel]
            message.inbound_body(buf)
        else:  # a heartbeat
            return False
        if not message.ready:
            expected[channel] = 3
            return False
        expected[channel] = 1
        del partial[channel]
        try:
            callback(channel, message.frame_method, message.frame_args, message)
        except UnicodeDecodeError:  # py-amqp reads the method's arguments before any listener sees them
            _dispatch_readable(callback, channel, message)
        return True
    return on_frame


def _read_header(message: Message, buf: Any) -> None:
    try:
        message.inbound_header(buf)
    except Exception as exc:  # noqa: BLE001 - whatever py-amqp fails on, the fields are read again below
        _, message.body_size = unpack_from(">HxxQ", buf, 0)
        message.ready = not message.body_size
        try:
            message.properties, problems = readable_properties(buf, 12)
        except (IndexError, struct.error):  # the property list is cut short: nothing of it is trusted
            message.properties, problems = {}, []
        mark(message.properties, problems or [f"properties ({type(exc).__name__}: {exc})"])
    properties = message.properties
    headers = properties.get("application_headers")
    if headers:
        if "compression" in headers:
            refuse_compression(headers, properties)
        try:
            "".join(headers)  # the cheapest check that every key is text (this runs for every message)
        except TypeError:
            _drop_bytes_keys(headers, properties)
    encoding = properties.get("content_encoding")
    if encoding is not None and encoding != "utf-8":
        _check_encoding(properties)


def _drop_bytes_keys(headers: Dict[Any, Any], properties: Dict[str, Any]) -> None:
    """py-amqp >= 5.3 keeps a header key that is not UTF-8 as bytes where older versions raise:
    unreadable either way, so the delivery is treated alike whatever the version."""
    keys = [key for key in headers if isinstance(key, bytes)]
    mark(properties, [f"header key {key!r} is not UTF-8" for key in keys])
    for key in keys:
        del headers[key]


def _check_encoding(properties: Dict[str, Any]) -> None:
    """Keep py-amqp from decoding a body with any codec a publisher names: it decodes with the
    `content_encoding` given, and some codecs take quadratic time (160 kB of 'punycode' take
    10 s of the connection thread, whose heartbeats then stop). One that is not a text
    encoding tcpulse reads is taken off and the delivery marked; a name that is no codec at
    all ('binary') leaves the body as bytes anyway.

    Example:
        >>> properties = {"content_encoding": "punycode"}
        >>> _check_encoding(properties); properties
        {'tcpulse-unreadable': "content_encoding 'punycode' is not a text encoding tcpulse reads (utf-8, utf-16, utf-32, ascii, latin-1)"}
    """
    encoding = properties["content_encoding"]
    try:
        readable = codecs.lookup(encoding).name in TEXT_ENCODINGS
    except LookupError:
        return
    if not readable:
        del properties["content_encoding"]
        mark(properties, [f"content_encoding {encoding!r} is not a text encoding tcpulse reads "
                          "(utf-8, utf-16, utf-32, ascii, latin-1)"])


def _dispatch_readable(callback: Callback, channel: int, message: Message) -> None:
    """Dispatch `message` again with its arguments made readable, after py-amqp failed to
    decode them; re-raise when they were readable (the error came from elsewhere)."""
    args, problems = readable_arguments(message.frame_method, message.frame_args)
    if not problems:
        raise
    mark(message.properties, problems)
    callback(channel, message.frame_method, args, message)


def readable_arguments(method_sig: Tuple[int, int], payload: Any) -> Tuple[bytes, List[str]]:
    """The arguments of a content method with each string that is not UTF-8 made readable
    (every byte that is not part of a UTF-8 character becomes '?', so the length stays), and
    what was replaced.

    Example:
        >>> args = struct.pack(">HH", 60, 60) + b"\\x03tag" + struct.pack(">Q", 7) + b"\\x00\\x01x\\x02k\\xff"
        >>> fixed, problems = readable_arguments((60, 60), args)
        >>> fixed[-3:], problems
        (b'\\x02k?', ["routing key b'k\\\\xff' is not UTF-8"])
    """
    formats, names = _ARGUMENTS[method_sig]
    out, problems, offset, bits = bytearray(payload[:4]), [], 4, False
    for letter, name in zip(formats, names):
        if letter == "b":
            if not bits:  # consecutive bits share an octet
                out += payload[offset:offset + 1]
                offset += 1
            bits = True
            continue
        bits = False
        if letter == "s":
            size = payload[offset]
            raw = bytes(payload[offset + 1:offset + 1 + size])
            text, problem = _text(name, raw)
            out += bytes([size]) + text.encode()
            problems += problem
            offset += 1 + size
        else:
            size = {"L": 8, "l": 4, "B": 2}[letter]
            out += payload[offset:offset + size]
            offset += size
    return bytes(out), problems


def readable_properties(buf: Any, offset: int) -> Tuple[Dict[str, Any], List[str]]:
    """Basic properties read field by field: what is readable, and what could not be read
    (strings that are not UTF-8 come with '?' for the bad bytes; unreadable headers are left out).

    Example:
        >>> flags = struct.pack(">H", 0x8000 | 0x2000)
        >>> headers = b"\\x04sent" + b"T" + struct.pack(">Q", 2 ** 63) + b"\\x02ok" + b"t\\x01"
        >>> buf = flags + b"\\x04json" + struct.pack(">I", len(headers)) + headers
        >>> readable_properties(buf, 0)
        ({'content_type': 'json', 'application_headers': {'ok': True}}, ["header 'sent' (OverflowError: timestamp out of range for platform time_t)"])
    """
    properties: Dict[str, Any] = {}
    problems: List[str] = []
    flags, = unpack_from(">H", buf, offset)
    offset += 2
    for flag, name, letter in _PROPERTIES:
        if not flags & flag:
            continue
        if letter == "s":
            size = buf[offset]
            properties[name], problem = _text(name, bytes(buf[offset + 1:offset + 1 + size]))
            problems += problem
            offset += 1 + size
        elif letter == "F":
            properties[name], offset = _readable_table(buf, offset, problems)
        elif letter == "o":
            properties[name] = buf[offset]
            offset += 1
        else:
            properties[name], = unpack_from(">Q", buf, offset)
            offset += 8
    return properties, problems


def _readable_table(buf: Any, offset: int, problems: List[str]) -> Tuple[Dict[Any, Any], int]:
    """The entries of the field table at `offset` that py-amqp can read, each read on its own;
    the others are named in `problems`. Returns the table and the offset after it."""
    size, = unpack_from(">I", buf, offset)
    position, end = offset + 4, offset + 4 + size
    table: Dict[Any, Any] = {}
    while position < end:
        start = position
        key = bytes(buf[position + 1:position + 1 + buf[position]])
        position += 1 + len(key)
        try:
            position = _skip_value(buf, position)
        except (KeyError, IndexError, struct.error):
            problems.append(f"headers from {_key_text(key)} on (unknown value type {chr(buf[position])!r})")
            break
        try:
            key.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"header key {key!r} is not UTF-8")
            continue
        entry = bytes(buf[start:position])
        try:
            (value,), _ = loads("F", struct.pack(">I", len(entry)) + entry, 0)
        except Exception as exc:  # noqa: BLE001 - OverflowError, OSError, RecursionError, ... all mean unreadable
            problems.append(f"header {_key_text(key)} ({type(exc).__name__}: {exc})")
            continue
        table.update(value)
    return table, end


def _skip_value(buf: Any, position: int) -> int:
    """The offset after the typed table value at `position` (nested values are skipped by
    their length: no recursion, however deep)."""
    letter = chr(buf[position])
    if letter in "SxFA":
        size, = unpack_from(">I", buf, position + 1)
        return position + 5 + size
    return position + 1 + _FIXED[letter]


def _text(name: str, raw: bytes) -> Tuple[str, List[str]]:
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        readable = raw.decode("utf-8", "surrogateescape")
        return "".join("?" if "\udc80" <= c <= "\udcff" else c for c in readable), [f"{name} {raw!r} is not UTF-8"]


def _key_text(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace"))


def mark(properties: Dict[str, Any], problems: List[str]) -> None:
    """Record on a delivery's properties what could not be read (added to what is there)."""
    properties[UNREADABLE] = "; ".join(filter(None, [properties.get(UNREADABLE), *problems]))


def refuse_compression(headers: Dict[str, Any], properties: Dict[str, Any]) -> None:
    """Take the `compression` header off a delivery before kombu inflates its body, and mark
    the delivery: compressed bodies are refused (Taskcluster never compresses; inflating one
    may take gigabytes), so it is dead-lettered as it came, never inflated.

    Example:
        >>> headers, properties = {"compression": "application/x-bz2", "a": 1}, {}
        >>> refuse_compression(headers, properties); headers, properties[UNREADABLE]
        ({'a': 1}, "body is compressed ('application/x-bz2'); compressed bodies are refused")
    """
    compression = headers.pop("compression")
    mark(properties, [f"body is compressed ({compression!r}); compressed bodies are refused"])


def fit_headers(channel: Any, headers: Dict[str, Any]) -> Dict[str, Any]:
    """`headers` for a copy published on `channel`, shrunk if needed so that its content header
    fits in one frame: first the message's own (foreign) headers are left out, then long failure
    texts are cut, then the CC list is left out; `tcpulse-dropped` says what was. Unchanged
    where frames have no size limit (memory://).

    Example:
        >>> class Channel: connection = type("C", (), {"frame_max": 4096})()
        >>> fit_headers(Channel(), {"pad": "x" * 5000, "tcpulse-attempt": 2})
        {'tcpulse-attempt': 2, 'tcpulse-dropped': 'the headers of the message (5034 bytes): the copy must fit in one frame of 4096 bytes'}
    """
    frame_max = getattr(getattr(channel, "connection", None), "frame_max", None)
    if not isinstance(frame_max, int) or _size(headers) <= frame_max - HEADER_FRAME_OVERHEAD:
        return headers
    room = frame_max - HEADER_FRAME_OVERHEAD
    dropped = [f"the headers of the message ({_size(headers)} bytes)"]
    fitted = {key: value for key, value in headers.items() if key in OWN_HEADERS}
    for shrink in (_cut_failures, _without_cc):
        note = f"{', '.join(dropped)}: the copy must fit in one frame of {frame_max} bytes"
        if _size({**fitted, H_DROPPED: note}) <= room:
            break
        dropped.append(shrink(fitted))
    return {**fitted, H_DROPPED: f"{', '.join(dropped)}: the copy must fit in one frame of {frame_max} bytes"}


def _cut_failures(headers: Dict[str, Any]) -> str:
    if H_REASON in headers:
        headers[H_REASON] = str(headers[H_REASON])[:TEXT_KEPT]
    if H_FAILURES in headers:
        failures = json.loads(headers[H_FAILURES])
        headers[H_FAILURES] = json.dumps({name: str(text)[:TEXT_KEPT] for name, text in failures.items()})
    return f"failure texts past {TEXT_KEPT} characters"


def _without_cc(headers: Dict[str, Any]) -> str:
    cc = headers.pop(H_CC, [])
    return f"the CC list ({len(cc)} routes)"


def _size(headers: Dict[str, Any]) -> int:
    return len(dumps("F", [headers]))


TRANSPORT_OPTIONS = {"frame_handler": frame_handler}
