"""Plain HTTP requests with the official client's retries: what `tcpulse.utils.makeHttpRequest`
and `tcpulse.utils.putFile` do.

Owns: `make_http_request` (one request retried after a connection error or a 5xx answer, up to
`retries` more times, a seekable payload sent again from its start; the last answer returned
whatever its status, the last connection error raised as requests raised it; redirects not
followed) and `put_file` (a file PUT streamed from disk with its Content-Length). As in the
official client, the waits grow as 0.1 s x attempt squared. Requests go on a session of their
own unless one is given: no netrc or other credential of the environment is added.

Imports requests (and the session factory); nothing else of tcpulse, so `tcpulse.utils` can
reach it without an import circle.

Example:
    >>> backoff(3)
    0.9
"""
import logging
import os
import time
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

import requests

from tcpulse._rest.sessions import new_session

log = logging.getLogger("tcpulse.client")


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (1, 2, ...), the official client's schedule."""
    return retry * retry / 10


def make_http_request(method: str, url: str, payload: Any, headers: Optional[Mapping[str, str]] = None,
                      retries: int = 5, session: Optional[requests.Session] = None) -> requests.Response:
    """Send one request, retried on connection errors and 5xx answers; the final response."""
    http = session or new_session(url)
    try:
        for retry in range(retries + 1):
            if retry:
                time.sleep(backoff(retry))
            if hasattr(payload, "seek"):
                payload.seek(0)
            try:
                response = http.request(method.upper(), url, data=payload, headers=headers, allow_redirects=False)
            except requests.RequestException as exc:
                if retry == retries:
                    raise
                log.warning("%s %s: %s; retrying (attempt %d of %d)", method.upper(), _origin(url),
                            type(exc).__name__, retry + 2, retries + 1)
                continue
            if 500 <= response.status_code < 600 and retry < retries:
                log.warning("%s %s: HTTP %d; retrying (attempt %d of %d)", method.upper(), _origin(url),
                            response.status_code, retry + 2, retries + 1)
                continue
            return response
    finally:
        if session is None:
            http.close()
    raise AssertionError("unreachable: the last attempt returns or raises")


def put_file(filename: str, url: str, contentType: str) -> requests.Response:
    """PUT the file at `filename` to `url`, streamed, with its length and `contentType`."""
    with open(filename, "rb") as file:
        length = os.fstat(file.fileno()).st_size
        return make_http_request("put", url, file, headers={"Content-Length": str(length), "Content-Type": contentType})


def _origin(url: str) -> str:
    # Logs name the host a request went to, never a signed URL's query or a password in it.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}"
