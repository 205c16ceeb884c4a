"""Downloading artifacts and objects, with the official client's names and keywords.

Owns: `downloadArtifact`, `downloadArtifactToBuf`, `downloadArtifactToFile` (an artifact of a
task, through the Queue: s3 and reference artifacts are fetched from their URL, object artifacts
through the Object service with the artifact's own temporary credentials, error artifacts raise
TaskclusterArtifactError), `download`, `downloadToBuf`, `downloadToFile` (an object of the Object
service, `getUrl` method, hashes verified), and the HTTP fetch behind them: streamed in 64 KiB
chunks (memory stays flat whatever the size), Content-Encoding decoded before it is written and
hashed, 5xx answers and broken connections retried from the first byte with a fresh writer (as
the official client's retry), redirects followed by hand and never from https to http. Storage
URLs get no Taskcluster credentials: no Authorization header, no netrc, no cookies of a client.

A writer has `write(chunk)`; a writer factory returns a fresh one, ready for the first byte, each
time an attempt starts. Imports requests (through client.py) and artifacts.py; never kombu.

Example:
    >>> import tcpulse, tcpulse.download
    >>> queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    >>> data, content_type = tcpulse.download.downloadArtifactToBuf(   # doctest: +SKIP
    ...     taskId="fQ3sX0JwTHKzSbbr7SYHQA", name="public/build/target.zip", queueService=queue)
"""
import io
import logging
import time
from typing import Any, BinaryIO, Callable, Optional, Protocol, Tuple
from urllib.parse import urljoin, urlsplit

import requests

from .artifacts import GET_URL_REQUEST, Hashes, artifact_source, content_type, get_url
from .client import BaseClient, new_session
from .errors import ClientUsageError, TaskclusterConnectionError, TaskclusterFailure, TaskclusterRestFailure
from .utils import calculateSleepTime

log = logging.getLogger(__name__)
CHUNK_SIZE = 64 * 1024
MAX_REDIRECTS = 10
TIMEOUT = 60.0  # seconds without a byte (connect or read), not for the whole download


class Writer(Protocol):
    def write(self, chunk: bytes) -> Any: ...


WriterFactory = Callable[[], Writer]


def downloadArtifactToBuf(*, taskId: str, name: str, queueService: BaseClient, runId: Optional[int] = None,
                          maxRetries: int = 5) -> Tuple[bytes, str]:
    """An artifact's bytes and content type; `runId=None` means the latest run.

    Example:
        >>> data, kind = downloadArtifactToBuf(taskId="t", name="public/x.txt", queueService=queue)  # doctest: +SKIP
    """
    buffer = _Buffer()
    kind = downloadArtifact(taskId=taskId, name=name, runId=runId, maxRetries=maxRetries,
                            queueService=queueService, writerFactory=buffer.fresh)
    return buffer.getvalue(), kind


def downloadArtifactToFile(file: BinaryIO, *, taskId: str, name: str, queueService: BaseClient,
                           runId: Optional[int] = None, maxRetries: int = 5) -> str:
    """Write an artifact into `file` (binary, seekable, truncatable: a retry starts it over); its content type.

    Example:
        >>> with open("target.zip", "wb") as file:  # doctest: +SKIP
        ...     downloadArtifactToFile(file, taskId="t", name="public/target.zip", queueService=queue)
    """
    return downloadArtifact(taskId=taskId, name=name, runId=runId, maxRetries=maxRetries,
                            queueService=queueService, writerFactory=_file_writers(file))


def downloadArtifact(*, taskId: str, name: str, queueService: BaseClient, writerFactory: WriterFactory,
                     runId: Optional[int] = None, maxRetries: int = 5) -> str:
    """Download an artifact into writers from `writerFactory`, whatever its storage type; its content type.

    Example:
        >>> chunks = []
        >>> downloadArtifact(taskId="t", name="public/x", queueService=queue,  # doctest: +SKIP
        ...                  writerFactory=lambda: chunks.clear() or chunks)
    """
    if runId is None:
        artifact = queueService.latestArtifact(taskId, name)
    else:
        artifact = queueService.artifact(taskId, runId, name)
    kind, where = artifact_source(artifact)
    if kind == "url":
        return _fetch(where, writerFactory, maxRetries, timeout=_timeout_of(queueService))
    object_name, credentials = where
    return download(name=object_name, maxRetries=maxRetries, writerFactory=writerFactory,
                    objectService=_object_service(queueService, credentials, maxRetries))


def downloadToBuf(*, name: str, objectService: BaseClient, maxRetries: int = 5) -> Tuple[bytes, str]:
    """An object's bytes (hashes verified) and content type.

    Example:
        >>> data, kind = downloadToBuf(name="my/object", objectService=tcpulse.Object(options))  # doctest: +SKIP
    """
    buffer = _Buffer()
    kind = download(name=name, objectService=objectService, maxRetries=maxRetries, writerFactory=buffer.fresh)
    return buffer.getvalue(), kind


def downloadToFile(file: BinaryIO, *, name: str, objectService: BaseClient, maxRetries: int = 5) -> str:
    """Write an object into `file` (binary, seekable, truncatable), hashes verified; its content type.

    Example:
        >>> with open("object.bin", "wb") as file:  # doctest: +SKIP
        ...     downloadToFile(file, name="my/object", objectService=tcpulse.Object(options))
    """
    return download(name=name, objectService=objectService, maxRetries=maxRetries, writerFactory=_file_writers(file))


def download(*, name: str, objectService: BaseClient, writerFactory: WriterFactory, maxRetries: int = 5) -> str:
    """Download an object of the Object service (`getUrl` method) into writers from `writerFactory`.

    The bytes, decoded, are checked against the object's sha256/sha512 (a mismatch raises
    ObjectHashVerificationError and is not retried); an expired URL is renewed before a retry.

    Example:
        >>> download(name="my/object", objectService=tcpulse.Object(options),  # doctest: +SKIP
        ...          writerFactory=lambda: open("object.bin", "wb"))
    """
    state = {"answer": get_url(objectService.startDownload(name, GET_URL_REQUEST)), "used": False}

    def current_url() -> str:
        if state["used"] and state["answer"].expired():
            state["answer"] = get_url(objectService.startDownload(name, GET_URL_REQUEST))
        state["used"] = True
        return state["answer"].url

    hashes: Hashes = Hashes()

    def hashing_writer() -> Writer:
        nonlocal hashes
        hashes = Hashes()
        return _Hashing(writerFactory(), hashes)

    kind = _fetch(current_url, hashing_writer, maxRetries, timeout=_timeout_of(objectService))
    hashes.verify(state["answer"].hashes)
    return kind


def _fetch(url: Any, writerFactory: WriterFactory, maxRetries: int, timeout: Any) -> str:
    """GET `url` (a URL, or a function giving the URL for each attempt) into a fresh writer per attempt."""
    attempts = maxRetries + 1
    for attempt in range(1, attempts + 1):
        where = url() if callable(url) else url
        try:
            with new_session(where) as http:
                return _fetch_once(http, where, writerFactory(), timeout)
        except _Retriable as exc:
            if attempt == attempts:
                raise exc.error from exc.error.superExc
            delay = calculateSleepTime(attempt)
            log.warning("%s; retrying in %.2f s (attempt %d of %d)", exc.error, delay, attempt + 1, attempts)
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


class _Retriable(Exception):
    def __init__(self, error: TaskclusterFailure):
        super().__init__(str(error))
        self.error = error


def _fetch_once(http: requests.Session, url: str, writer: Writer, timeout: Any) -> str:
    """One attempt: follow redirects by hand, then stream the body into `writer`."""
    try:
        response = _follow(http, url, timeout)
        with response:
            if response.status_code >= 400:
                error = TaskclusterRestFailure(f"download of {_without_query(response.url)}: HTTP "
                                               f"{response.status_code} {response.reason}",
                                               status_code=response.status_code, body={})
                if response.status_code >= 500:
                    raise _Retriable(error)
                raise error
            for chunk in response.iter_content(CHUNK_SIZE):
                writer.write(chunk)
            return content_type(response.headers.get("Content-Type"))
    except requests.RequestException as exc:
        raise _Retriable(TaskclusterConnectionError(
            f"download of {_without_query(url)}: {type(exc).__name__}: {exc}", superExc=exc)) from exc


def _follow(http: requests.Session, url: str, timeout: Any) -> requests.Response:
    for _ in range(MAX_REDIRECTS + 1):
        response = http.get(url, stream=True, timeout=timeout, allow_redirects=False)
        location = response.headers.get("Location")
        if not (300 <= response.status_code < 400 and location):
            return response
        response.close()
        url = redirect_target(url, location)
    raise TaskclusterFailure(f"download of {_without_query(url)}: more than {MAX_REDIRECTS} redirects")


def redirect_target(url: str, location: str) -> str:
    """Where a redirect from `url` leads; from https, only to https (the bytes must stay private
    and intact on the way).

    Example:
        >>> redirect_target("https://a.example/x?sig=1", "/y")
        'https://a.example/y'
    """
    target = urljoin(url, location)
    if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
        raise TaskclusterFailure(f"download of {_without_query(url)}: refusing a redirect from https to "
                                 f"{urlsplit(target).scheme} URL {_without_query(target)}")
    return target


def _without_query(url: str) -> str:
    # Storage URLs are often signed in their query; errors and logs name the object, not the signature.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _timeout_of(client: BaseClient) -> Any:
    timeout = client.options.get("timeout", TIMEOUT)
    return tuple(timeout) if isinstance(timeout, list) else timeout  # requests takes (connect, read) as a tuple


def _object_service(queue: BaseClient, credentials: Any, maxRetries: int) -> BaseClient:
    from . import Object  # generated on first use, like every service class

    root = queue.options.get("rootUrl")
    if not root:
        raise ClientUsageError("downloading an object artifact needs the Queue client's options['rootUrl'] "
                               "(the Object service lives under the same rootUrl)")
    return Object({"rootUrl": root, "maxRetries": maxRetries, "credentials": credentials,
                   "timeout": queue.options.get("timeout", TIMEOUT)})


class _Hashing:
    """A writer that feeds what it writes to the hashes too."""

    def __init__(self, inner: Writer, hashes: Hashes):
        self.inner, self.hashes = inner, hashes

    def write(self, chunk: bytes) -> None:
        self.inner.write(chunk)
        self.hashes.update(chunk)


class _Buffer:
    """An in-memory buffer that starts over each time `fresh` is called."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    def fresh(self) -> Writer:
        self._buffer = io.BytesIO()
        return self._buffer

    def getvalue(self) -> bytes:
        return self._buffer.getvalue()


def _file_writers(file: BinaryIO) -> WriterFactory:
    def fresh() -> Writer:
        file.seek(0)
        file.truncate()
        return file

    return fresh
