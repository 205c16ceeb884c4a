"""Taskcluster credentials and Hawk: request signing, bewits and temporary credentials.

Owns: `Credentials` (never shows its secrets), the Hawk `ext` encoding the official client
uses (base64url of compact JSON with `certificate` and `authorizedScopes`), Hawk request
headers and bewits (mohawk, sha256), and `createTemporaryCredentials`.

Imports mohawk and the standard library; never requests or kombu (transport is client.py's).
Its public names are re-exported by `tcpulse.auth`, which also holds the Auth service's class.

Example:
    >>> creds = Credentials.from_option({"clientId": "me", "accessToken": "secret"})
    >>> creds
    Credentials(clientId='me', accessToken=<hidden>, certificate=None)
"""
import base64
import calendar
import datetime
import hashlib
import hmac
import json
import logging
from typing import Any, Dict, List, Mapping, Optional

import mohawk
import mohawk.base
import mohawk.bewit

from tcpulse.errors import ClientUsageError, TaskclusterAuthFailure
from tcpulse.utils import dumpJson, slugId

_CREDENTIAL_KEYS = ("clientId", "accessToken", "certificate")
_MAX_TEMPORARY = datetime.timedelta(days=31)


class _DropDebug(logging.Filter):
    """mohawk logs whole Hawk headers (the MAC) and the signed text (the certificate) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


for _name in ("mohawk.base", "mohawk.util", "mohawk.sender", "mohawk.receiver", "mohawk.bewit"):
    logging.getLogger(_name).addFilter(_DropDebug())


def _text(value: Any, what: str) -> str:
    # Name the field and the type only, never the value: it may be a secret.
    if isinstance(value, bytes):
        value = value.decode("latin-1")  # any byte above 0x7f then fails the ASCII check below
    if not isinstance(value, str):
        raise ClientUsageError(f"credentials: {what} must be a string (got {type(value).__name__})")
    if not value.isascii():
        # Hawk headers carry only ASCII; the official client refuses these when the client is built.
        raise TaskclusterAuthFailure(f"credentials: {what} must be ASCII text (it holds other characters)")
    return value


class Credentials:
    """A clientId with its accessToken and, for temporary credentials, the certificate.

    The certificate is kept as a parsed JSON object; `repr` and `str` hide the secrets.

    Example:
        >>> Credentials("me", "secret").clientId
        'me'
    """

    __slots__ = ("clientId", "accessToken", "certificate")

    def __init__(self, clientId: str, accessToken: str, certificate: Any = None):
        self.clientId = _text(clientId, "clientId")
        self.accessToken = _text(accessToken, "accessToken")
        self.certificate = _parse_certificate(certificate)

    @classmethod
    def from_option(cls, option: Optional[Mapping[str, Any]]) -> Optional["Credentials"]:
        """The credentials of a client's `credentials` option, or None when it has none.

        Example:
            >>> Credentials.from_option({"clientId": None, "accessToken": None}) is None
            True
        """
        if not option:
            return None
        if not isinstance(option, Mapping):
            raise ClientUsageError("option 'credentials' must be a dict with clientId and accessToken "
                                   f"(got {type(option).__name__})")
        unknown = sorted(set(option) - set(_CREDENTIAL_KEYS))
        if unknown:
            raise ClientUsageError(f"option 'credentials' has unknown keys {unknown}; "
                                   f"valid keys: {', '.join(_CREDENTIAL_KEYS)}")
        if not option.get("clientId") or not option.get("accessToken"):
            return None
        return cls(option["clientId"], option["accessToken"], option.get("certificate"))

    def __repr__(self) -> str:
        certificate = "<hidden>" if self.certificate is not None else None
        return f"Credentials(clientId={self.clientId!r}, accessToken=<hidden>, certificate={certificate})"

    __str__ = __repr__


def _parse_certificate(certificate: Any) -> Optional[Dict[str, Any]]:
    if certificate is None or certificate == "":
        return None
    if isinstance(certificate, bytes):
        certificate = certificate.decode("utf-8")
    if isinstance(certificate, str):
        if not certificate.isascii():
            raise TaskclusterAuthFailure("credentials: certificate must be ASCII text (it holds other characters)")
        try:
            certificate = json.loads(certificate)
        except ValueError:
            # `from None`: the parse error carries the certificate text, signature included.
            raise ClientUsageError("credentials: certificate must be the JSON text of a temporary "
                                   "credentials certificate (it does not parse as JSON)") from None
    if not isinstance(certificate, dict):
        raise ClientUsageError("credentials: certificate must be a JSON object "
                               f"(got {type(certificate).__name__})")
    return certificate


def hawk_ext(credentials: Credentials, authorized_scopes: Optional[List[str]] = None) -> str:
    """The Hawk `ext` value: base64url (padding kept) of `{"certificate":..., "authorizedScopes":...}`.

    The official client sends it on every signed request, `e30=` ('{}') when there is nothing to say.

    Example:
        >>> hawk_ext(Credentials("me", "secret"))
        'e30='
    """
    ext: Dict[str, Any] = {}
    if credentials.certificate is not None:
        ext["certificate"] = credentials.certificate
    if authorized_scopes is not None:
        ext["authorizedScopes"] = list(authorized_scopes)
    return base64.urlsafe_b64encode(dumpJson(ext).encode("utf-8")).decode("ascii")


def _mohawk_credentials(credentials: Credentials) -> Dict[str, str]:
    return {"id": credentials.clientId, "key": credentials.accessToken, "algorithm": "sha256"}


def hawk_header(credentials: Credentials, ext: str, method: str, url: str,
                content: bytes = b"", content_type: str = "") -> str:
    """The `Authorization` header value that signs one request (payload hash included).

    Example:
        >>> hawk_header(Credentials("me", "secret"), "e30=", "GET", "http://x/v1/ping").startswith("Hawk ")
        True
    """
    sender = mohawk.Sender(_mohawk_credentials(credentials), url, method.upper(),
                           content=content, content_type=content_type, ext=ext)
    return sender.request_header


def bewit(credentials: Credentials, ext: str, url: str, expires_at: int) -> str:
    """A Hawk bewit for a GET of `url` valid until the Unix time `expires_at` (padding stripped).

    Example:
        >>> len(bewit(Credentials("me", "secret"), "e30=", "http://x/v1/a", 2000000000)) > 40
        True
    """
    resource = mohawk.base.Resource(credentials=_mohawk_credentials(credentials), method="GET",
                                    url=url, timestamp=expires_at, nonce="", ext=ext)
    return mohawk.bewit.get_bewit(resource).rstrip("=")


def _milliseconds(moment: datetime.datetime) -> int:
    # A naive datetime counts as UTC, as in the official client.
    return calendar.timegm(moment.utctimetuple()) * 1000


def _hmac(key: str, text: str) -> bytes:
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()


def createTemporaryCredentials(clientId: str, accessToken: str, start: datetime.datetime,
                               expiry: datetime.datetime, scopes: List[str],
                               name: Optional[str] = None) -> Dict[str, str]:
    """Temporary credentials issued by (clientId, accessToken), valid from start to expiry.

    At most 31 days long. With `name`, the credentials are named (clientId `name`, issuer
    recorded in the certificate); the issuer then needs `auth:create-client:<name>`.
    Returns {'clientId', 'accessToken', 'certificate'} with the certificate as JSON text.

    Example:
        >>> start = datetime.datetime(2020, 1, 1)
        >>> creds = createTemporaryCredentials("me", "secret", start,
        ...                                    start + datetime.timedelta(hours=1), ["queue:*"])
        >>> json.loads(creds["certificate"])["expiry"] - json.loads(creds["certificate"])["start"]
        3600000
    """
    clientId, accessToken = _text(clientId, "clientId"), _text(accessToken, "accessToken")
    _check_temporary(start, expiry, scopes)
    certificate: Dict[str, Any] = {
        "version": 1, "scopes": list(scopes), "start": _milliseconds(start),
        "expiry": _milliseconds(expiry), "seed": slugId() + slugId(),
    }
    if name:
        certificate["issuer"] = clientId
    certificate["signature"] = base64.b64encode(
        _hmac(accessToken, certificate_text(certificate, name))).decode("ascii")
    return {
        "clientId": name or clientId,
        "accessToken": temporary_access_token(accessToken, certificate["seed"]),
        "certificate": dumpJson(certificate),
    }


def _check_temporary(start: datetime.datetime, expiry: datetime.datetime, scopes: List[str]) -> None:
    if isinstance(scopes, str) or not all(isinstance(scope, str) for scope in scopes):
        raise ClientUsageError(f"createTemporaryCredentials: scopes must be a list of strings (got {scopes!r})")
    if not expiry > start:
        raise ClientUsageError(f"createTemporaryCredentials: expiry ({expiry}) must be after start ({start})")
    if expiry - start > _MAX_TEMPORARY:
        raise ClientUsageError("createTemporaryCredentials: temporary credentials may last at most "
                               f"31 days (got {expiry - start})")


def certificate_text(certificate: Mapping[str, Any], name: Optional[str] = None) -> str:
    """The text the certificate's signature covers (the auth service's format).

    Example:
        >>> certificate_text({"version": 1, "seed": "s", "start": 1, "expiry": 2, "scopes": ["a"]}).split()
        ['version:1', 'seed:s', 'start:1', 'expiry:2', 'scopes:', 'a']
    """
    lines = [f"version:{certificate['version']}"]
    if name:
        lines += [f"clientId:{name}", f"issuer:{certificate['issuer']}"]
    lines += [f"seed:{certificate['seed']}", f"start:{certificate['start']}",
              f"expiry:{certificate['expiry']}", "scopes:", *certificate["scopes"]]
    return "\n".join(lines)


def temporary_access_token(issuer_access_token: str, seed: str) -> str:
    """The accessToken of temporary credentials: base64url, unpadded, of HMAC(issuer token, seed).

    Example:
        >>> len(temporary_access_token("issuer-secret", "seed"))
        43
    """
    digest = _hmac(issuer_access_token, seed)
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

