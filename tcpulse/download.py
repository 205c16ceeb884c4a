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
import time
from typing import Any, BinaryIO, Optional, Tuple

import requests

from tcpulse._rest.artifacts import (CHUNK_SIZE, GET_URL_REQUEST, MAX_REDIRECTS, Buffer, Hashes, HashingWriter,
                                    ObjectUrl, Retriable, Writer, WriterFactory, artifact_source, connection_failure,
                                    content_type, emptied_on_mismatch, file_writers, get_url, object_options,
                                    redirect_target, retry_delay, without_query)
from tcpulse.client import BaseClient, new_session
from tcpulse.errors import TaskclusterFailure, TaskclusterRestFailure

__all__ = ["downloadArtifactToBuf", "downloadArtifactToFile", "downloadArtifact", "downloadToBuf",
           "downloadToFile", "download", "redirect_target", "Writer", "WriterFactory"]


def downloadArtifactToBuf(*, taskId: str, name: str, queueService: BaseClient, runId: Optional[int] = None,
                          maxRetries: int = 5) -> Tuple[bytes, str]:
    """An artifact's bytes and content type; `runId=None` means the latest run.

    Example:
        >>> data, kind = downloadArtifactToBuf(taskId="t", name="public/x.txt", queueService=queue)  # doctest: +SKIP
    """
    buffer = Buffer()
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
    with emptied_on_mismatch(file):
        return downloadArtifact(taskId=taskId, name=name, runId=runId, maxRetries=maxRetries,
                                queueService=queueService, writerFactory=file_writers(file))


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
        return _fetch(where, writerFactory, maxRetries, timeout=queueService.request_timeout)
    object_name, credentials = where
    return download(name=object_name, maxRetries=maxRetries, writerFactory=writerFactory,
                    objectService=_object_service(queueService, credentials, maxRetries))


def downloadToBuf(*, name: str, objectService: BaseClient, maxRetries: int = 5) -> Tuple[bytes, str]:
    """An object's bytes (hashes verified) and content type.

    Example:
        >>> data, kind = downloadToBuf(name="my/object", objectService=tcpulse.Object(options))  # doctest: +SKIP
    """
    buffer = Buffer()
    kind = download(name=name, objectService=objectService, maxRetries=maxRetries, writerFactory=buffer.fresh)
    return buffer.getvalue(), kind


def downloadToFile(file: BinaryIO, *, name: str, objectService: BaseClient, maxRetries: int = 5) -> str:
    """Write an object into `file` (binary, seekable, truncatable), hashes verified; its content
    type. Bytes that fail their hashes are not left in the file: it is emptied, then the error raised.

    Example:
        >>> with open("object.bin", "wb") as file:  # doctest: +SKIP
        ...     downloadToFile(file, name="my/object", objectService=tcpulse.Object(options))
    """
    with emptied_on_mismatch(file):
        return download(name=name, objectService=objectService, maxRetries=maxRetries,
                        writerFactory=file_writers(file))


def download(*, name: str, objectService: BaseClient, writerFactory: WriterFactory, maxRetries: int = 5) -> str:
    """Download an object of the Object service (`getUrl` method) into writers from `writerFactory`.

    The bytes, decoded, are checked against the object's sha256/sha512 (a mismatch raises
    ObjectHashVerificationError and is not retried); an expired URL is renewed before a retry.

    Example:
        >>> download(name="my/object", objectService=tcpulse.Object(options),  # doctest: +SKIP
        ...          writerFactory=lambda: open("object.bin", "wb"))
    """
    url = ObjectUrl(get_url(objectService.startDownload(name, GET_URL_REQUEST)))

    def current_url() -> str:
        if url.renew_needed():
            url.answer = get_url(objectService.startDownload(name, GET_URL_REQUEST))
        return url.take()

    hashes: Hashes = Hashes()

    def hashing_writer() -> Writer:
        nonlocal hashes
        hashes = Hashes()
        return HashingWriter(writerFactory(), hashes)

    kind = _fetch(current_url, hashing_writer, maxRetries, timeout=objectService.request_timeout)
    hashes.verify(url.answer.hashes)
    return kind


def _fetch(url: Any, writerFactory: WriterFactory, maxRetries: int, timeout: Any) -> str:
    """GET `url` (a URL, or a function giving the URL for each attempt) into a fresh writer per attempt."""
    attempts = maxRetries + 1
    for attempt in range(1, attempts + 1):
        where = url() if callable(url) else url
        try:
            with new_session(where) as http:
                return _fetch_once(http, where, writerFactory(), timeout)
        except Retriable as failure:
            time.sleep(retry_delay(failure, attempt, attempts))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _fetch_once(http: requests.Session, url: str, writer: Writer, timeout: Any) -> str:
    """One attempt: follow redirects by hand, then stream the body into `writer`."""
    try:
        response = _follow(http, url, timeout)
        with response:
            if response.status_code >= 400:
                error = TaskclusterRestFailure(f"download of {without_query(response.url)}: HTTP "
                                               f"{response.status_code} {response.reason}",
                                               status_code=response.status_code, body={})
                if response.status_code >= 500:
                    raise Retriable(error)
                raise error
            for chunk in response.iter_content(CHUNK_SIZE):
                writer.write(chunk)
            return content_type(response.headers.get("Content-Type"))
    except requests.RequestException as exc:
        raise connection_failure(url, exc) from None


def _follow(http: requests.Session, url: str, timeout: Any) -> requests.Response:
    for _ in range(MAX_REDIRECTS + 1):
        response = http.get(url, stream=True, timeout=timeout, allow_redirects=False)
        location = response.headers.get("Location")
        if not (300 <= response.status_code < 400 and location):
            return response
        response.close()
        url = redirect_target(url, location)
    raise TaskclusterFailure(f"download of {without_query(url)}: more than {MAX_REDIRECTS} redirects")


def _object_service(queue: BaseClient, credentials: Any, maxRetries: int) -> BaseClient:
    from tcpulse import Object  # generated on first use, like every service class

    return Object(object_options(queue.options, credentials, maxRetries))
