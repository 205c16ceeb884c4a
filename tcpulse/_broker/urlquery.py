"""The query string of a broker URL, read as kombu reads it.

Owns: `UrlQuery`: `?ssl=1` turns TLS on (as kombu does for any non-empty value, except that
'0', 'false', 'no' and 'off' turn it off here rather than on); `ssl_*` keys are TLS options and
turn TLS on too (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs` by the names
kombu accepts, `ssl_check_hostname`); `heartbeat`, `connect_timeout` and `login_method` go to
the connection. Any other key is refused by name: kombu would drop it without a word.

Imports neither kombu nor requests.

Example:
    >>> q = UrlQuery("ssl=1&heartbeat=10")
    >>> q.tls, q.heartbeat, q.suffix, q.ssl_options("pulse.mozilla.org")
    (True, 10.0, '?ssl=1&heartbeat=10', {'server_hostname': 'pulse.mozilla.org'})
"""
import ssl
from typing import Any, Dict, Optional
from urllib.parse import parse_qsl

_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# kombu's spellings of ssl_cert_reqs (kombu.utils.url.parse_ssl_cert_reqs).
_CERT_REQS = {"CERT_REQUIRED": ssl.CERT_REQUIRED, "CERT_OPTIONAL": ssl.CERT_OPTIONAL, "CERT_NONE": ssl.CERT_NONE,
              "required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
# ssl_* keys and the py-amqp TLS option each becomes.
_TLS_FILES = {"ssl_ca_certs": "ca_certs", "ssl_certfile": "certfile", "ssl_keyfile": "keyfile"}
_KEYS = ("ssl", *_TLS_FILES, "ssl_cert_reqs", "ssl_check_hostname", "heartbeat", "connect_timeout", "login_method")


class UrlQuery:
    """What a broker URL's query string (the text after '?') asks of the connection."""

    __slots__ = ("suffix", "tls", "heartbeat", "_tls_options", "_check_hostname", "_connection")

    def __init__(self, text: str) -> None:
        self.suffix = f"?{text}" if text else ""
        params = dict(parse_qsl(text, keep_blank_values=True))
        unknown = sorted(set(params) - set(_KEYS))
        if unknown:
            raise ValueError(f"broker URL query parameter {unknown[0]!r} is not one tcpulse reads "
                             f"(expected any of: {', '.join(_KEYS)})")
        self._tls_options: Dict[str, Any] = {_TLS_FILES[k]: v for k, v in params.items() if k in _TLS_FILES}
        if "ssl_cert_reqs" in params:
            self._tls_options["cert_reqs"] = _choice("ssl_cert_reqs", params["ssl_cert_reqs"], _CERT_REQS)
        # kombu: anything but 'false' checks the host name.
        self._check_hostname = params.get("ssl_check_hostname", "true").lower() != "false"
        wants_options = any(key.startswith("ssl_") for key in params)
        self.tls = _flag("ssl", params["ssl"]) if "ssl" in params else wants_options
        if wants_options and not self.tls:
            raise ValueError("broker URL query turns TLS off (ssl=0) but gives ssl_* options: drop one of them")
        self.heartbeat = _seconds("heartbeat", params["heartbeat"]) if "heartbeat" in params else None
        self._connection: Dict[str, Any] = {}
        if "connect_timeout" in params:
            self._connection["connect_timeout"] = _seconds("connect_timeout", params["connect_timeout"])
        if params.get("login_method"):
            self._connection["login_method"] = params["login_method"]

    def ssl_options(self, host: str) -> Dict[str, Any]:
        """py-amqp's TLS options: the server name (SNI and the certificate checked against the
        host) unless the query turned checking off, and the query's files and requirements."""
        checked = self._check_hostname and self._tls_options.get("cert_reqs") != ssl.CERT_NONE
        # py-amqp refuses CERT_NONE while the host name is checked, and checks it whenever it has one.
        return {**({"server_hostname": host} if checked else {}), **self._tls_options}

    def connection_options(self) -> Dict[str, Any]:
        """kombu Connection keyword arguments besides TLS and heartbeat."""
        return dict(self._connection)


def _flag(key: str, value: str) -> bool:
    if value.lower() in _ON or value.lower() in _OFF:
        return value.lower() in _ON
    raise ValueError(f"broker URL query parameter {key!r} must be one of {', '.join(_ON + _OFF)} (got {value!r})")


def _choice(key: str, value: str, choices: Dict[str, Any]) -> Any:
    if value not in choices:
        raise ValueError(f"broker URL query parameter {key!r} must be one of {', '.join(choices)} (got {value!r})")
    return choices[value]


def _seconds(key: str, value: str) -> Optional[float]:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f"broker URL query parameter {key!r} must be a number of seconds >= 0 (got {value!r})")
    return seconds
