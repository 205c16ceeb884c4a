"""What an upload to the Object service asks and answers, apart from the network.

Owns: the `createUpload` request (`create_upload_request`: `dataInline` proposed for data under
`DATA_INLINE_MAX_SIZE` bytes, `putUrl` always, as the official client proposes), reading its
answer (`chosen_method`: the service picks), the `finishUpload` request with the sha256 and
sha512 of exactly `contentLength` bytes (`finish_upload_request`), `HashingReader` (hashes and
counts what a reader gives), `put_headers` (only what the service named: storage gets no
credentials) and `check_put_status` (a 5xx is worth another attempt, a 4xx is fatal).

Transport-independent, shared by the requests-based uploader (upload.py) and the async one
(aio/upload.py): imports only the standard library, slugid and tcpulse's errors and artifacts.

Example:
    >>> chosen_method({"uploadMethod": {"dataInline": True}})
    ('dataInline', None)
"""
import base64
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple

import slugid

from tcpulse._rest.artifacts import Hashes, Retriable, without_query
from tcpulse.errors import ClientUsageError, TaskclusterFailure, TaskclusterRestFailure

# The official client proposes dataInline below this many bytes; the service may still pick putUrl.
DATA_INLINE_MAX_SIZE = 8192


class Reader(Protocol):
    def read(self, max_size: int) -> Any: ...


class HashingReader:
    """A reader that feeds what it reads to sha256 and sha512 and counts it (awaiting the inner
    reader's `read` is the async caller's business: `seen` takes the chunk it gave).

    Example:
        >>> import io
        >>> reader = HashingReader(io.BytesIO(b"abc"))
        >>> reader.read(10), reader.count
        (b'abc', 3)
    """

    def __init__(self, inner: Reader):
        self.inner, self.hashes, self.count = inner, Hashes(), 0

    def read(self, max_size: int) -> bytes:
        return self.seen(self.inner.read(max_size))

    def seen(self, chunk: bytes) -> bytes:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ClientUsageError(f"an upload reader's read() must return bytes (got {type(chunk).__name__})")
        self.hashes.update(chunk)
        self.count += len(chunk)
        return bytes(chunk)


def check_arguments(name: str, contentLength: Any, maxRetries: Any) -> None:
    """One clear error for the arguments a typo would break before anything is sent."""
    if not isinstance(name, str) or not name:
        raise ClientUsageError(f"upload: name must be a non-empty string (got {name!r})")
    if isinstance(contentLength, bool) or not isinstance(contentLength, int) or contentLength < 0:
        raise ClientUsageError(f"upload of {name}: contentLength must be an int >= 0 (got {contentLength!r})")
    if isinstance(maxRetries, bool) or not isinstance(maxRetries, int) or maxRetries < 0:
        raise ClientUsageError(f"upload of {name}: maxRetries must be an int >= 0 (got {maxRetries!r})")


def create_upload_request(*, projectId: str, uploadId: Optional[str], expires: Any, contentType: str,
                          contentLength: int, inline: Optional[bytes]) -> Dict[str, Any]:
    """The `createUpload` payload; `inline` is the data when it is small enough to propose inline.

    Example:
        >>> request = create_upload_request(projectId="p", uploadId="u", expires="2030-01-01T00:00:00Z",
        ...                                 contentType="text/plain", contentLength=2, inline=b"hi")
        >>> request["proposedUploadMethods"]["dataInline"]["objectData"]
        'aGk='
    """
    proposed: Dict[str, Any] = {}
    if inline is not None:
        proposed["dataInline"] = {"contentType": contentType, "objectData": base64.b64encode(inline).decode()}
    proposed["putUrl"] = {"contentType": contentType, "contentLength": contentLength}
    return {"expires": expires, "projectId": projectId, "uploadId": uploadId or slugid.nice(),
            "proposedUploadMethods": proposed}


def chosen_method(answer: Mapping[str, Any]) -> Tuple[str, Optional[Mapping[str, Any]]]:
    """('dataInline', None): the data went with `createUpload`; ('putUrl', {url, headers}): PUT it there.

    Example:
        >>> chosen_method({"uploadMethod": {"putUrl": {"url": "https://s/o", "headers": {}}}})[0]
        'putUrl'
    """
    method = answer.get("uploadMethod") or {}
    if "dataInline" in method:
        return "dataInline", None
    if "putUrl" in method:
        return "putUrl", method["putUrl"]
    raise TaskclusterFailure(f"Object.createUpload answered with upload method {sorted(method)!r}; "
                             "only dataInline and putUrl were proposed: could not negotiate an upload method")


def put_headers(put_url: Mapping[str, Any], contentLength: int) -> Dict[str, str]:
    """The headers of the PUT to storage: the service's (its signature may cover them) and the
    length, nothing of the client's."""
    headers = {str(key): str(value) for key, value in (put_url.get("headers") or {}).items()}
    if not any(key.lower() == "content-length" for key in headers):
        headers["Content-Length"] = str(contentLength)
    return headers


def check_put_status(url: str, status: int, reason: str) -> None:
    """Nothing for a success; a 4xx raises TaskclusterRestFailure; a 5xx raises it wrapped in
    Retriable, so that the next attempt reads the data from the start again.

    Example:
        >>> check_put_status("https://s.example/o?X-Amz-Signature=secret", 403, "Forbidden")
        Traceback (most recent call last):
        tcpulse.errors.TaskclusterRestFailure: upload of https://s.example/o: HTTP 403 Forbidden
    """
    if status < 400:
        return
    error = TaskclusterRestFailure(f"upload of {without_query(url)}: HTTP {status} {reason}", status_code=status,
                                   body={})
    if status >= 500:
        raise Retriable(error)
    raise error


def finish_upload_request(*, name: str, projectId: str, uploadId: str, reader: HashingReader,
                          contentLength: int) -> Dict[str, Any]:
    """The `finishUpload` payload with the hashes of what was sent, which must be `contentLength` bytes."""
    if reader.count != contentLength:
        raise ClientUsageError(f"upload of {name}: contentLength is {contentLength} but the reader gave "
                               f"{reader.count} bytes")
    return {"projectId": projectId, "uploadId": uploadId, "hashes": reader.hashes.hexdigests()}
