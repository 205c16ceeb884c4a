"""What the Queue and Object services answer about where an artifact's bytes are, and checking
the bytes once they are here.

Owns: reading an `artifact`/`latestArtifact` answer (`artifact_source`: a URL to fetch, an object
to download through the Object service, or `TaskclusterArtifactError`), the `startDownload`
request and the reading of its answer (`GET_URL_REQUEST`, `get_url`), `Hashes` (sha256 and
sha512 over the decoded bytes, fed chunk by chunk) with the official client's verification rules,
`content_type` (the official client's content type: the media type alone), and the pieces of a
download that do not touch the network: `ObjectUrl` (a `getUrl` answer, renewed when expired
before a retry), `redirect_target` (never from https to anything else: `downgrade_refusal`), `without_query`
(errors name the object, not its signature), `Retriable` and `retry_delay` (what is retried and
its log line), `connection_failure` (a broken connection, told without the URL's query),
`emptied_on_mismatch` (a file whose bytes fail their hashes is left empty), `object_options` (the Object client an object artifact is fetched through) and
the writers (`HashingWriter`, `Buffer`, `file_writers`).

Transport-independent, shared by the requests-based downloader (download.py) and the async one
(aio/download.py): imports only the standard library, utils.py and errors.py.

Example:
    >>> artifact_source({"storageType": "reference", "url": "https://example.com/x"})
    ('url', 'https://example.com/x')
"""
import contextlib
import datetime
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Iterator, Mapping, Optional, Protocol, Tuple
from urllib.parse import urljoin, urlsplit

from tcpulse.errors import (ClientUsageError, ObjectHashVerificationError, TaskclusterArtifactError,
                            TaskclusterConnectionError, TaskclusterFailure)
from tcpulse.utils import calculateSleepTime

log = logging.getLogger("tcpulse.download")
CHUNK_SIZE = 64 * 1024
MAX_REDIRECTS = 10

# A URL's query as HTTP libraries quote it in their errors ("...with url: /a?X-Amz-Signature=...").
_QUERY = re.compile(r"\?[^\s'\")]*")

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

    def hexdigests(self) -> Dict[str, str]:
        """The hashes as the Object service takes them (`finishUpload`'s `hashes`)."""
        return {name: digest.hexdigest() for name, digest in self._hashes.items()}

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


class Writer(Protocol):
    def write(self, chunk: bytes) -> Any: ...


WriterFactory = Callable[[], Writer]


class ObjectUrl:
    """The current `getUrl` answer of an object's download: `renew_needed()` says whether the
    next attempt must ask `startDownload` again first (its URL was used and has expired).

    Example:
        >>> url = ObjectUrl(get_url({"method": "getUrl", "url": "u", "expires": "2020-01-01T00:00:00Z", "hashes": {}}))
        >>> url.renew_needed(), url.take(), url.renew_needed()
        (False, 'u', True)
    """

    def __init__(self, answer: GetUrl) -> None:
        self.answer, self._used = answer, False

    def renew_needed(self) -> bool:
        return self._used and self.answer.expired()

    def take(self) -> str:
        self._used = True
        return self.answer.url


class Retriable(Exception):
    """A failed attempt worth another (5xx, a broken connection); `error` is what the caller
    gets once the attempts are used up."""

    def __init__(self, error: TaskclusterFailure):
        super().__init__(str(error))
        self.error = error


def connection_failure(url: str, exc: BaseException, what: str = "download") -> Retriable:
    """A broken connection to `url` during a `what` (download, upload) as a failure worth another
    attempt. requests and aiohttp
    quote the URL, signature and all, in their errors: the text and the exception kept as
    `superExc` (of the same type where it can be rebuilt from a message) keep no query.

    Example:
        >>> failure = connection_failure("https://s.example/a?X-Amz-Signature=s3cr3t",
        ...                              OSError("Max retries exceeded with url: /a?X-Amz-Signature=s3cr3t"))
        >>> str(failure.error), repr(failure.error.superExc)
        ('download of https://s.example/a: OSError: Max retries exceeded with url: /a?...', "OSError('Max retries exceeded with url: /a?...')")
    """
    text = _QUERY.sub("?...", str(exc))
    try:
        clean: BaseException = type(exc)(text)
    except Exception:  # an error type whose constructor wants more than a message
        clean = ConnectionError(text)
    return Retriable(TaskclusterConnectionError(f"{what} of {without_query(url)}: {type(exc).__name__}: {text}",
                                                superExc=clean))


@contextlib.contextmanager
def emptied_on_mismatch(file: BinaryIO) -> Iterator[None]:
    """Leave `file` empty when what was written fails its hashes: a file holding the wrong
    bytes would pass for a finished download."""
    try:
        yield
    except ObjectHashVerificationError:
        file.seek(0)
        file.truncate()
        raise


def retry_delay(failure: Retriable, attempt: int, attempts: int, logger: logging.Logger = log) -> float:
    """Seconds to wait before the next attempt, logged with why (on `logger`); after the last
    attempt, raise the failure's error."""
    if attempt >= attempts:
        raise failure.error from failure.error.superExc
    delay = calculateSleepTime(attempt)
    logger.warning("%s; retrying in %.2f s (attempt %d of %d)", failure.error, delay, attempt + 1, attempts)
    return delay


def redirect_target(url: str, location: str) -> str:
    """Where a redirect from `url` leads; from https, only to https (`downgrade_refusal`).

    Example:
        >>> redirect_target("https://a.example/x?sig=1", "/y")
        'https://a.example/y'
    """
    target = urljoin(url, location)
    refusal = downgrade_refusal(url, target)
    if refusal:
        raise TaskclusterFailure(f"download of {without_query(url)}: {refusal}")
    return target


def downgrade_refusal(url: str, target: str) -> Optional[str]:
    """Why a redirect from `url` to absolute `target` must not be followed, else None: from https,
    only https is allowed (what comes back must stay private and intact on the way).

    Example:
        >>> downgrade_refusal("https://a.example/x", "http://b.example/y?sig=1")
        'refusing a redirect from https to http URL http://b.example/y'
    """
    scheme = urlsplit(target).scheme
    if urlsplit(url).scheme == "https" and scheme != "https":
        return f"refusing a redirect from https to {scheme} URL {without_query(target)}"
    return None


def without_query(url: str) -> str:
    """`url` without its query or user:password: storage URLs are often signed there, and a
    redirect may carry credentials; errors and logs name the object, not the secrets.

    Example:
        >>> without_query("https://user:pw@s.example:8443/a/b?X-Amz-Signature=secret")
        'https://s.example:8443/a/b'
    """
    parts = urlsplit(url)
    # The last '@' ends the user information (a password may hold '@'); host and port stay as written.
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def object_options(queue_options: Mapping[str, Any], credentials: Any, maxRetries: int) -> Dict[str, Any]:
    """Options of the Object client that fetches an object artifact: the Queue client's rootUrl
    and timeout, the artifact's own credentials."""
    root = queue_options.get("rootUrl")
    if not root:
        raise ClientUsageError("downloading an object artifact needs the Queue client's options['rootUrl'] "
                               "(the Object service lives under the same rootUrl)")
    return {"rootUrl": root, "maxRetries": maxRetries, "credentials": credentials,
            "timeout": queue_options["timeout"]}


class HashingWriter:
    """A writer that feeds what it writes to the hashes too (awaiting the inner writer's
    `write` is the async caller's business: `write` returns what the inner one returned)."""

    def __init__(self, inner: Writer, hashes: Hashes):
        self.inner, self.hashes = inner, hashes

    def write(self, chunk: bytes) -> Any:
        self.hashes.update(chunk)
        return self.inner.write(chunk)


class Buffer:
    """An in-memory buffer that starts over each time `fresh` is called."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    def fresh(self) -> Writer:
        self._buffer = io.BytesIO()
        return self._buffer

    def getvalue(self) -> bytes:
        return self._buffer.getvalue()


def file_writers(file: BinaryIO) -> WriterFactory:
    """A writer factory over `file`: each attempt starts it over (seek 0, truncate)."""
    def fresh() -> Writer:
        file.seek(0)
        file.truncate()
        return file

    return fresh
