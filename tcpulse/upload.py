"""Uploading objects to the Object service, with the official client's names and keywords.

Owns: `upload` (data from a reader factory), `uploadFromBuf` (bytes), `uploadFromFile` (a binary,
seekable file) and the PUT to storage behind them. Data under 8 KiB is proposed inline with
`createUpload` (`dataInline`), and `putUrl` always; the service picks. A `putUrl` upload streams
the data (a file is never read whole: memory stays flat whatever its size), with only the
headers the service named, on a session of its own: storage never sees the Object client's
credentials. 5xx answers and broken connections are retried (`maxRetries`, default 5) reading
the data from the start again from a fresh reader; a 4xx is fatal. `finishUpload` gets the
sha256 and sha512 of what was sent. What does not touch the network is
`tcpulse._rest.uploading`'s, shared with `tcpulse.aio.upload`.

A reader has `read(max_size)` returning 1 to max_size bytes, or b"" at the end; a reader
factory returns a fresh one, at the first byte, each time an attempt starts.

Imports requests; never kombu.

Example:
    >>> import tcpulse, tcpulse.upload
    >>> objects = tcpulse.Object({"rootUrl": "https://tc.example.com"})
    >>> tcpulse.upload.uploadFromBuf(projectId="my-project", name="my/object", data=b"hello",  # doctest: +SKIP
    ...     contentType="text/plain", contentLength=5, expires=tcpulse.fromNow("1 day"), objectService=objects)
"""
import io
import logging
import time
from typing import Any, BinaryIO, Callable, Optional

import requests

from tcpulse._rest.uploading import (DATA_INLINE_MAX_SIZE, HashingReader, Reader, check_arguments,
                                     check_put_status, chosen_method, create_upload_request,
                                     finish_upload_request, put_headers)
from tcpulse._rest.artifacts import CHUNK_SIZE, Retriable, connection_failure, retry_delay
from tcpulse.client import BaseClient, new_session

__all__ = ["upload", "uploadFromBuf", "uploadFromFile", "DATA_INLINE_MAX_SIZE", "Reader", "ReaderFactory"]

ReaderFactory = Callable[[], Reader]
log = logging.getLogger("tcpulse.upload")


def uploadFromBuf(*, data: bytes, projectId: str, name: str, contentType: str, contentLength: int, expires: Any,
                  objectService: BaseClient, maxRetries: int = 5, uploadId: Optional[str] = None) -> None:
    """Upload `data` (bytes) as object `name`.

    Example:
        >>> uploadFromBuf(data=b"hi", projectId="p", name="o", contentType="text/plain", contentLength=2,  # doctest: +SKIP
        ...               expires=tcpulse.fromNow("1 day"), objectService=objects)
    """
    upload(readerFactory=lambda: io.BytesIO(data), projectId=projectId, name=name, contentType=contentType,
           contentLength=contentLength, expires=expires, objectService=objectService, maxRetries=maxRetries,
           uploadId=uploadId)


def uploadFromFile(*, file: BinaryIO, projectId: str, name: str, contentType: str, contentLength: int, expires: Any,
                   objectService: BaseClient, maxRetries: int = 5, uploadId: Optional[str] = None) -> None:
    """Upload `file` (open in binary mode, seekable: each attempt starts at its first byte), streamed.

    Example:
        >>> with open("build.tar.gz", "rb") as file:  # doctest: +SKIP
        ...     uploadFromFile(file=file, projectId="p", name="o", contentType="application/gzip",
        ...                    contentLength=os.fstat(file.fileno()).st_size, expires=expires, objectService=objects)
    """
    def fresh() -> Reader:
        file.seek(0)
        return file

    upload(readerFactory=fresh, projectId=projectId, name=name, contentType=contentType,
           contentLength=contentLength, expires=expires, objectService=objectService, maxRetries=maxRetries,
           uploadId=uploadId)


def upload(*, projectId: str, name: str, contentType: str, contentLength: int, expires: Any,
           readerFactory: ReaderFactory, objectService: BaseClient, maxRetries: int = 5,
           uploadId: Optional[str] = None) -> None:
    """Upload what readers from `readerFactory` give (exactly `contentLength` bytes) as object
    `name`, with the credentials of `objectService` (an Object client) for the service only.

    Example:
        >>> upload(readerFactory=lambda: open("data.bin", "rb"), projectId="p", name="o",  # doctest: +SKIP
        ...        contentType="application/octet-stream", contentLength=1024, expires=expires,
        ...        objectService=objects)
    """
    check_arguments(name, contentLength, maxRetries)
    reader: Optional[HashingReader] = None
    inline = None
    if contentLength < DATA_INLINE_MAX_SIZE:
        reader = HashingReader(readerFactory())
        inline = _read_all(reader)
    request = create_upload_request(projectId=projectId, uploadId=uploadId, expires=expires, contentType=contentType,
                                    contentLength=contentLength, inline=inline)
    method, put_url = chosen_method(objectService.createUpload(name, request))
    if put_url is not None:
        reader = _put(put_url, readerFactory, contentLength, maxRetries, objectService.request_timeout)
    assert reader is not None  # dataInline is only proposed after reading the data
    objectService.finishUpload(name, finish_upload_request(name=name, projectId=projectId,
                                                           uploadId=request["uploadId"], reader=reader,
                                                           contentLength=contentLength))


def _read_all(reader: HashingReader) -> bytes:
    chunks = []
    while True:
        chunk = reader.read(CHUNK_SIZE)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class _Body:
    """The PUT's body: requests reads it block by block (so it is streamed) and takes its length
    from `len`, so it is sent with a Content-Length rather than chunked."""

    def __init__(self, reader: HashingReader, length: int):
        self.reader, self.length = reader, length

    def read(self, max_size: int = CHUNK_SIZE) -> bytes:
        return self.reader.read(max_size if max_size and max_size > 0 else CHUNK_SIZE)

    def __len__(self) -> int:
        return self.length


def _put(put_url: Any, readerFactory: ReaderFactory, contentLength: int, maxRetries: int,
         timeout: Any) -> HashingReader:
    """PUT the data to storage, a fresh reader per attempt; the reader of the attempt that succeeded."""
    url, headers = put_url["url"], put_headers(put_url, contentLength)
    attempts = maxRetries + 1
    for attempt in range(1, attempts + 1):
        reader = HashingReader(readerFactory())
        try:
            # A session of its own: storage never sees a client's credentials, cookies or netrc.
            with new_session(url) as http:
                response = http.put(url, data=_Body(reader, contentLength), headers=headers, timeout=timeout,
                                    allow_redirects=False)
                with response:
                    check_put_status(url, response.status_code, response.reason)
            return reader
        except requests.RequestException as exc:
            failure = connection_failure(url, exc, "upload")
        except Retriable as retriable:
            failure = retriable
        time.sleep(retry_delay(failure, attempt, attempts, log))
    raise AssertionError("unreachable: the last attempt returns or raises")
