"""What the Queue and Object services answer about where an artifact's bytes are, and checking
the bytes once they are here.

Owns: reading an `artifact`/`latestArtifact` answer (`artifact_source`: a URL to fetch, an object
to download through the Object service, or `TaskclusterArtifactError`), the `startDownload`
request and the reading of its answer (`GET_URL_REQUEST`, `get_url`), `Hashes` (sha256 and
sha512 over the decoded bytes, fed chunk by chunk) with the official client's verification rules,
and `content_type` (the official client's content type: the media type alone).

Transport-independent, shared by the requests-based downloader (download.py) and the async one:
imports only the standard library and errors.py.

Example:
    >>> artifact_source({"storageType": "reference", "url": "https://example.com/x"})
    ('url', 'https://example.com/x')
"""
import datetime
import hashlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import ObjectHashVerificationError, TaskclusterArtifactError, TaskclusterFailure

# The hashes the object service's schemas accept; at least one must be present and match.
ACCEPTABLE_HASHES = ("sha256", "sha512")
GET_URL_REQUEST: Dict[str, Any] = {"acceptDownloadMethods": {"getUrl": True}}


def artifact_source(artifact: Mapping[str, Any]) -> Tuple[str, Any]:
    """('url', URL) for s3 and reference artifacts, ('object', (name, credentials)) for object
    artifacts; an error artifact raises TaskclusterArtifactError with its message and reason.

    Example:
        >>> try:
        ...     artifact_source({"storageType": "error", "message": "gone", "reason": "file-missing-on-worker"})
        ... except TaskclusterArtifactError as error:
        ...     print(error, error.reason)
        gone file-missing-on-worker
    """
    storage = artifact.get("storageType")
    if storage in ("s3", "reference"):
        return "url", artifact["url"]
    if storage == "object":
        return "object", (artifact["name"], artifact["credentials"])
    if storage == "error":
        raise TaskclusterArtifactError(artifact.get("message", ""), artifact.get("reason", ""))
    raise TaskclusterFailure(f"unknown artifact storageType {storage!r} (known: s3, reference, object, error)")


@dataclass(frozen=True)
class GetUrl:
    """A `getUrl` answer of `Object.startDownload`: where to GET the bytes, until when, their hashes."""
    url: str
    expires: datetime.datetime
    hashes: Mapping[str, str]

    def expired(self, now: Optional[datetime.datetime] = None) -> bool:
        """Whether the URL is past its expiry (then `startDownload` gives a fresh one).

        Example:
            >>> get_url({"method": "getUrl", "url": "u", "expires": "2020-01-01T00:00:00.000Z", "hashes": {}}).expired()
            True
        """
        return self.expires < (now or datetime.datetime.now(datetime.timezone.utc))


def get_url(answer: Mapping[str, Any]) -> GetUrl:
    """Read a `startDownload` answer; only the `getUrl` method is asked for, so only it is accepted.

    Example:
        >>> get_url({"method": "getUrl", "url": "https://s/o", "expires": "2030-01-01T00:00:00Z",
        ...          "hashes": {"sha256": "ab"}}).hashes
        {'sha256': 'ab'}
    """
    method = answer.get("method")
    if method != "getUrl":
        raise TaskclusterFailure(f"Object.startDownload answered with download method {method!r}; "
                                 "only 'getUrl' was asked for")
    expires = datetime.datetime.fromisoformat(answer["expires"].replace("Z", "+00:00"))
    return GetUrl(url=answer["url"], expires=expires, hashes=dict(answer.get("hashes") or {}))


class Hashes:
    """sha256 and sha512 of the bytes fed to `update`, checked against the object's hashes.

    Example:
        >>> hashes = Hashes()
        >>> hashes.update(b"abc")
        >>> hashes.verify({"sha256": hashlib.sha256(b"abc").hexdigest()})
    """

    def __init__(self) -> None:
        self._hashes = {name: hashlib.new(name) for name in ACCEPTABLE_HASHES}

    def update(self, chunk: bytes) -> None:
        for digest in self._hashes.values():
            digest.update(chunk)

    def verify(self, expected: Mapping[str, str]) -> None:
        """Raise ObjectHashVerificationError unless every expected hash we compute matches and at
        least one acceptable hash was there to check (the official client's rules)."""
        checked = False
        for name, digest in self._hashes.items():
            if name in expected:
                if digest.hexdigest() != expected[name]:
                    raise ObjectHashVerificationError(f"Validation of object data's {name} hash failed")
                checked = True
        if not checked:
            raise ObjectHashVerificationError("No acceptable hashes found in object metadata "
                                              f"(expected one of {', '.join(ACCEPTABLE_HASHES)})")


def content_type(header: Optional[str]) -> str:
    """The media type of a Content-Type header, parameters dropped, lower case; none means
    application/octet-stream (what the official client returns).

    Example:
        >>> content_type("Text/Plain; charset=utf-8"), content_type(None)
        ('text/plain', 'application/octet-stream')
    """
    media = (header or "").split(";")[0].strip().lower()
    return media or "application/octet-stream"
