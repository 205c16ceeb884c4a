"""Async uploads of objects: `tcpulse.upload`'s functions, awaitable.

Owns: `upload`, `uploadFromBuf`, `uploadFromFile` with the sync module's names, keywords and
behaviour, taking a `tcpulse.aio.Object` client, and the aiohttp PUT to storage behind them:
`dataInline` under 8 KiB when the service picks it, else the data streamed in 64 KiB chunks with
the service's headers only, on a session of its own (no Taskcluster credential reaches
storage); 5xx answers and broken connections retried from a fresh reader, a 4xx fatal;
`finishUpload` with the sha256 and sha512. A reader factory may be sync or async (the official
client's are async), and so may a reader's `read`. What does not touch the network is
`tcpulse._rest.uploading`'s, shared with the sync module.

Imports aiohttp; never requests or kombu.

Example:
    >>> import tcpulse.aio, tcpulse.aio.upload
    >>> async def store(data):   # doctest: +SKIP
    ...     async with tcpulse.aio.Object({"rootUrl": "https://tc.example.com"}) as objects:
    ...         await tcpulse.aio.upload.uploadFromBuf(
    ...             projectId="my-project", name="my/object", data=data, contentType="text/plain",
    ...             contentLength=len(data), expires=tcpulse.fromNow("1 day"), objectService=objects)
"""
import asyncio
import io
import logging
from typing import Any, AsyncIterator, BinaryIO, Callable, Optional

import aiohttp

from tcpulse._rest.uploading import (DATA_INLINE_MAX_SIZE, HashingReader, check_arguments, check_put_status,
                                     chosen_method, create_upload_request, finish_upload_request, put_headers)
from tcpulse.aio.client import AsyncClient, new_session
from tcpulse.aio.download import _maybe_await
from tcpulse._rest.artifacts import CHUNK_SIZE, Retriable, connection_failure, retry_delay

__all__ = ["upload", "uploadFromBuf", "uploadFromFile", "DATA_INLINE_MAX_SIZE"]

AnyReaderFactory = Callable[[], Any]  # returns a reader, or an awaitable of one
log = logging.getLogger("tcpulse.upload")


async def uploadFromBuf(*, data: bytes, projectId: str, name: str, contentType: str, contentLength: int,
                        expires: Any, objectService: AsyncClient, maxRetries: int = 5,
                        uploadId: Optional[str] = None) -> None:
    """Upload `data` (bytes) as object `name`.

    Example:
        >>> await uploadFromBuf(data=b"hi", projectId="p", name="o", contentType="text/plain",  # doctest: +SKIP
        ...                     contentLength=2, expires=tcpulse.fromNow("1 day"), objectService=objects)
    """
    await upload(readerFactory=lambda: io.BytesIO(data), projectId=projectId, name=name, contentType=contentType,
                 contentLength=contentLength, expires=expires, objectService=objectService, maxRetries=maxRetries,
                 uploadId=uploadId)


async def uploadFromFile(*, file: BinaryIO, projectId: str, name: str, contentType: str, contentLength: int,
                         expires: Any, objectService: AsyncClient, maxRetries: int = 5,
                         uploadId: Optional[str] = None) -> None:
    """Upload `file` (open in binary mode, seekable: each attempt starts at its first byte), streamed.

    Example:
        >>> with open("build.tar.gz", "rb") as file:  # doctest: +SKIP
        ...     await uploadFromFile(file=file, projectId="p", name="o", contentType="application/gzip",
        ...                          contentLength=os.fstat(file.fileno()).st_size, expires=expires,
        ...                          objectService=objects)
    """
    def fresh() -> BinaryIO:
        file.seek(0)
        return file

    await upload(readerFactory=fresh, projectId=projectId, name=name, contentType=contentType,
                 contentLength=contentLength, expires=expires, objectService=objectService, maxRetries=maxRetries,
                 uploadId=uploadId)


async def upload(*, projectId: str, name: str, contentType: str, contentLength: int, expires: Any,
                 readerFactory: AnyReaderFactory, objectService: AsyncClient, maxRetries: int = 5,
                 uploadId: Optional[str] = None) -> None:
    """Upload what readers from `readerFactory` give (exactly `contentLength` bytes) as object
    `name`, with the credentials of `objectService` (a `tcpulse.aio.Object`) for the service only.

    Example:
        >>> async def readers():  # doctest: +SKIP
        ...     return open("data.bin", "rb")
        >>> await upload(readerFactory=readers, projectId="p", name="o",  # doctest: +SKIP
        ...              contentType="application/octet-stream", contentLength=1024, expires=expires,
        ...              objectService=objects)
    """
    check_arguments(name, contentLength, maxRetries)
    reader: Optional[HashingReader] = None
    inline = None
    if contentLength < DATA_INLINE_MAX_SIZE:
        reader = HashingReader(await _maybe_await(readerFactory()))
        inline = b"".join([chunk async for chunk in _chunks(reader)])
    request = create_upload_request(projectId=projectId, uploadId=uploadId, expires=expires, contentType=contentType,
                                    contentLength=contentLength, inline=inline)
    method, put_url = chosen_method(await objectService.createUpload(name, request))
    if put_url is not None:
        reader = await _put(put_url, readerFactory, contentLength, maxRetries, objectService.aiohttp_timeout)
    assert reader is not None  # dataInline is only proposed after reading the data
    await objectService.finishUpload(name, finish_upload_request(name=name, projectId=projectId,
                                                                 uploadId=request["uploadId"], reader=reader,
                                                                 contentLength=contentLength))


async def _chunks(reader: HashingReader) -> AsyncIterator[bytes]:
    """What `reader` gives, chunk by chunk, hashed, until its end."""
    while True:
        chunk = reader.seen(await _maybe_await(reader.inner.read(CHUNK_SIZE)))
        if not chunk:
            return
        yield chunk


async def _put(put_url: Any, readerFactory: AnyReaderFactory, contentLength: int, maxRetries: int,
               timeout: "aiohttp.ClientTimeout") -> HashingReader:
    """PUT the data to storage, a fresh reader per attempt; the reader of the attempt that succeeded."""
    url, headers = put_url["url"], put_headers(put_url, contentLength)
    attempts = maxRetries + 1
    for attempt in range(1, attempts + 1):
        reader = HashingReader(await _maybe_await(readerFactory()))
        try:
            # A session of its own per attempt: storage never sees a client's credentials or cookies.
            async with new_session(timeout) as http:
                async with http.put(url, data=_chunks(reader), headers=headers, allow_redirects=False) as response:
                    check_put_status(url, response.status, response.reason or "")
            return reader
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            failure = connection_failure(url, exc, "upload")
        except Retriable as retriable:
            failure = retriable
        await asyncio.sleep(retry_delay(failure, attempt, attempts, log))
    raise AssertionError("unreachable: the last attempt returns or raises")
