"""An attacker's toolkit: deliveries that py-amqp cannot decode, and a compression bomb.

Any Pulse user may publish to its own exchanges, and any listener may bind them; so each form
below is what one message from another user can put in front of a listener. They are written as
raw AMQP (the property list and the routing key exactly as the attacker chose the bytes), since
py-amqp and kombu would refuse to encode most of them.

Test-only module; imports amqp (through kombu's dependency), never the package under test.
"""
import contextlib
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import amqp

BOMB = Path(__file__).resolve().parent / "fixtures" / "bomb-300MB.bz2"  # bz2 of 300 MiB of zeros
BOMB_INFLATED = 300 * 1024 * 1024


def shortstr(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


def table(entries: List[Tuple[bytes, bytes]]) -> bytes:
    """A field table (its length, then key and typed value pairs)."""
    body = b"".join(shortstr(key) + value for key, value in entries)
    return struct.pack(">I", len(body)) + body


def timestamp(seconds: int) -> bytes:
    return b"T" + struct.pack(">Q", seconds)


def text(value: bytes) -> bytes:
    return b"S" + struct.pack(">I", len(value)) + value


def array(*items: bytes) -> bytes:
    body = b"".join(items)
    return b"A" + struct.pack(">I", len(body)) + body


def nested(depth: int) -> bytes:
    """An array holding an array ... `depth` levels deep."""
    value = b"V"
    for _ in range(depth):
        value = array(value)
    return value


def properties(content_type: Optional[bytes] = b"application/json", content_encoding: Optional[bytes] = None,
               headers: Optional[bytes] = None) -> bytes:
    """A basic-class property list: flags, then the fields present (persistent delivery mode)."""
    flags, fields = 0x1000, []
    if content_type is not None:
        flags |= 0x8000
        fields.append(shortstr(content_type))
    if content_encoding is not None:
        flags |= 0x4000
        fields.append(shortstr(content_encoding))
    if headers is not None:
        flags |= 0x2000
        fields.append(headers)
    return struct.pack(">H", flags) + b"".join(fields) + bytes([2])


class RawMessage(amqp.Message):
    """A message whose property list goes on the wire as the bytes given."""

    def __init__(self, body: bytes, raw_properties: bytes) -> None:
        super().__init__(body)
        self.raw_properties = raw_properties

    def _serialize_properties(self) -> bytes:
        return self.raw_properties


class Hostile(NamedTuple):
    """One hostile delivery: its property bytes, its routing key bytes, and words the listener's
    dead-letter reason must contain."""
    raw_properties: bytes
    routing_key: bytes
    reason: str


KEY = b"primary.hostile"

# Each form py-amqp raises on inside drain_events (see issue 18): name -> the delivery.
HOSTILE: Dict[str, Hostile] = {
    "content_type": Hostile(properties(content_type=b"application/\xff\xfejson"), KEY, "content_type"),
    "content_encoding": Hostile(properties(content_encoding=b"utf-\xc3\x28"), KEY, "content_encoding"),
    "routing_key": Hostile(properties(), b"primary.\xffhostile", "routing key"),
    "header_key": Hostile(properties(headers=table([(b"trace-\xff", text(b"x"))])), KEY, "header"),
    "timestamp_2_63": Hostile(properties(headers=table([(b"sent", timestamp(2 ** 63))])), KEY, "'sent'"),
    "nested_timestamp": Hostile(properties(headers=table([(b"trace", array(array(timestamp(2 ** 62))))])),
                                KEY, "'trace'"),
    # Decoding with it takes quadratic time (1 MB: minutes of the connection thread, whose heartbeats stop).
    "content_encoding_punycode": Hostile(properties(content_encoding=b"punycode"), KEY, "content_encoding 'punycode'"),
    "array_5000_deep": Hostile(properties(headers=table([(b"deep", nested(5000))])), KEY, "'deep'"),
}


def publish_raw(channel: amqp.Channel, exchange: str, hostile: Hostile, body: bytes = b'{"hostile": true}') -> None:
    """Publish one hostile delivery on a py-amqp channel (with publisher confirms: the broker took it)."""
    channel.basic_publish_confirm(RawMessage(body, hostile.raw_properties), exchange=exchange,
                                  routing_key=hostile.routing_key)


def bomb_headers() -> Dict[str, str]:
    """The headers kombu's own `compression="bzip2"` puts on a message."""
    return {"compression": "application/x-bz2"}


@contextlib.contextmanager
def exchange_of(user: Any, exchange: str) -> Iterator[amqp.Channel]:
    """`user`'s topic exchange `exchange` (any Pulse user's listener may bind it), deleted at
    the end, and a py-amqp channel with publisher confirms to publish on it as that user."""
    connection = amqp.Connection("127.0.0.1:5672", userid=user.name, password=user.password)
    connection.connect()
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, "topic", durable=False, auto_delete=False)
        channel.confirm_select()
        yield channel
        channel.exchange_delete(exchange)
    finally:
        connection.close()
