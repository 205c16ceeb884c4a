"""Async downloads of artifacts and objects: `tcpulse.download`'s functions, awaitable.

Owns: `downloadArtifact`, `downloadArtifactToBuf`, `downloadArtifactToFile`, `download`,
`downloadToBuf`, `downloadToFile` with the sync module's names, keywords and results, taking
`tcpulse.aio` clients (`queueService=tcpulse.aio.Queue(...)`), and the aiohttp fetch behind
them: streamed in 64 KiB chunks, Content-Encoding decoded before writing and hashing, 5xx and
broken connections retried from the first byte with a fresh writer, redirects followed by hand
and never from https to http, storage URLs fetched on a session of their own without any
Taskcluster credential. A writer factory may be sync or async, and so may a writer's `write`.
What does not touch the network (artifact kinds, getUrl answers, hashes, redirects' rules, the
retry schedule, the writers) is artifacts.py's, shared with the sync module.

Imports aiohttp; never requests or kombu.

Example:
    >>> import tcpulse.aio, tcpulse.aio.download
    >>> async def fetch():   # doctest: +SKIP
    ...     async with tcpulse.aio.Queue({"rootUrl": "https://tc.example.com"}) as queue:
    ...         return await tcpulse.aio.download.downloadArtifactToBuf(
    ...             taskId="fQ3sX0JwTHKzSbbr7SYHQA", name="public/build/target.zip", queueService=queue)
"""
import asyncio
import inspect
from typing import Any, BinaryIO, Callable, Optional, Tuple

import aiohttp

from tcpulse._rest.artifacts import (CHUNK_SIZE, GET_URL_REQUEST, MAX_REDIRECTS, Buffer, Hashes, HashingWriter,
                                    ObjectUrl, Retriable, Writer, artifact_source, connection_failure, content_type,
                                    emptied_on_mismatch, file_writers, get_url, object_options, redirect_target,
                                    retry_delay, without_query)
from tcpulse.errors import TaskclusterFailure, TaskclusterRestFailure
from tcpulse.aio.client import AsyncClient, new_session

AnyWriterFactory = Callable[[], Any]  # returns a writer, or an awaitable of one


async def downloadArtifactToBuf(*, taskId: str, name: str, queueService: AsyncClient, runId: Optional[int] = None,
                                maxRetries: int = 5) -> Tuple[bytes, str]:
    """An artifact's bytes and content type; `runId=None` means the latest run.

    Example:
        >>> data, kind = await downloadArtifactToBuf(taskId="t", name="public/x.txt", queueService=queue)  # doctest: +SKIP
    """
    buffer = Buffer()
    kind = await downloadArtifact(taskId=taskId, name=name, runId=runId, maxRetries=maxRetries,
                                  queueService=queueService, writerFactory=buffer.fresh)
    return buffer.getvalue(), kind


async def downloadArtifactToFile(file: BinaryIO, *, taskId: str, name: str, queueService: AsyncClient,
                                 runId: Optional[int] = None, maxRetries: int = 5) -> str:
    """Write an artifact into `file` (binary, seekable, truncatable: a retry starts it over); its content type.

    Example:
        >>> with open("target.zip", "wb") as file:  # doctest: +SKIP
        ...     await downloadArtifactToFile(file, taskId="t", name="public/target.zip", queueService=queue)
    """
    with emptied_on_mismatch(file):
        return await downloadArtifact(taskId=taskId, name=name, runId=runId, maxRetries=maxRetries,
                                      queueService=queueService, writerFactory=file_writers(file))


async def downloadArtifact(*, taskId: str, name: str, queueService: AsyncClient, writerFactory: AnyWriterFactory,
                           runId: Optional[int] = None, maxRetries: int = 5) -> str:
    """Download an artifact into writers from `writerFactory`, whatever its storage type; its content type.

    Example:
        >>> await downloadArtifact(taskId="t", name="public/x", queueService=queue,  # doctest: +SKIP
        ...                        writerFactory=io.BytesIO)
    """
    if runId is None:
        artifact = await queueService.latestArtifact(taskId, name)
    else:
        artifact = await queueService.artifact(taskId, runId, name)
    kind, where = artifact_source(artifact)
    if kind == "url":
        return await _fetch(where, writerFactory, maxRetries, queueService.aiohttp_timeout)
    object_name, credentials = where
    from tcpulse.aio import Object  # generated on first use, like every service class

    async with Object(object_options(queueService.options, credentials, maxRetries)) as objects:
        return await download(name=object_name, maxRetries=maxRetries, writerFactory=writerFactory,
                              objectService=objects)


async def downloadToBuf(*, name: str, objectService: AsyncClient, maxRetries: int = 5) -> Tuple[bytes, str]:
    """An object's bytes (hashes verified) and content type.

    Example:
        >>> data, kind = await downloadToBuf(name="my/object", objectService=objects)  # doctest: +SKIP
    """
    buffer = Buffer()
    kind = await download(name=name, objectService=objectService, maxRetries=maxRetries, writerFactory=buffer.fresh)
    return buffer.getvalue(), kind


async def downloadToFile(file: BinaryIO, *, name: str, objectService: AsyncClient, maxRetries: int = 5) -> str:
    """Write an object into `file` (binary, seekable, truncatable), hashes verified; its content
    type. Bytes that fail their hashes are not left in the file: it is emptied, then the error raised.

    Example:
        >>> with open("object.bin", "wb") as file:  # doctest: +SKIP
        ...     await downloadToFile(file, name="my/object", objectService=objects)
    """
    with emptied_on_mismatch(file):
        return await download(name=name, objectService=objectService, maxRetries=maxRetries,
                              writerFactory=file_writers(file))


async def download(*, name: str, objectService: AsyncClient, writerFactory: AnyWriterFactory,
                   maxRetries: int = 5) -> str:
    """Download an object of the Object service (`getUrl` method) into writers from `writerFactory`;
    the decoded bytes are checked against its sha256/sha512 (a mismatch is not retried); an
    expired URL is renewed before a retry.

    Example:
        >>> await download(name="my/object", objectService=objects, writerFactory=io.BytesIO)  # doctest: +SKIP
    """
    url = ObjectUrl(get_url(await objectService.startDownload(name, GET_URL_REQUEST)))

    async def current_url() -> str:
        if url.renew_needed():
            url.answer = get_url(await objectService.startDownload(name, GET_URL_REQUEST))
        return url.take()

    hashes: Hashes = Hashes()

    async def hashing_writer() -> Writer:
        nonlocal hashes
        hashes = Hashes()
        return HashingWriter(await _maybe_await(writerFactory()), hashes)

    kind = await _fetch(current_url, hashing_writer, maxRetries, objectService.aiohttp_timeout)
    hashes.verify(url.answer.hashes)
    return kind


async def _fetch(url: Any, writerFactory: AnyWriterFactory, maxRetries: int, timeout: "aiohttp.ClientTimeout") -> str:
    """GET `url` (a URL, or an async function giving the URL for each attempt) into a fresh writer per attempt."""
    attempts = maxRetries + 1
    for attempt in range(1, attempts + 1):
        where = await url() if callable(url) else url
        try:
            # A session of its own per attempt: storage never sees a client's credentials or cookies.
            async with new_session(timeout) as http:
                return await _fetch_once(http, where, await _maybe_await(writerFactory()))
        except Retriable as failure:
            await asyncio.sleep(retry_delay(failure, attempt, attempts))
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _fetch_once(http: "aiohttp.ClientSession", url: str, writer: Writer) -> str:
    """One attempt: follow redirects by hand, then stream the body into `writer`."""
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with http.get(url, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if 300 <= response.status < 400 and location:
                    url = redirect_target(url, location)
                    continue
                if response.status >= 400:
                    error = TaskclusterRestFailure(f"download of {without_query(url)}: HTTP {response.status} "
                                                   f"{response.reason}", status_code=response.status, body={})
                    if response.status >= 500:
                        raise Retriable(error)
                    raise error
                async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                    await _maybe_await(writer.write(chunk))
                return content_type(response.headers.get("Content-Type"))
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise connection_failure(url, exc) from None
    raise TaskclusterFailure(f"download of {without_query(url)}: more than {MAX_REDIRECTS} redirects")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


