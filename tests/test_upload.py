"""Uploads against a fake Object service and a separate storage server (tests/objectserver.py),
each scenario run three ways: `tcpulse.upload`, `tcpulse.aio.upload`, and the official client
(taskcluster 113.x, in its own interpreter) as the control. What the servers saw is checked the
same way for all three; only the exception classes differ (tcpulse's own are checked apart)."""
import asyncio
import base64
import io
import json
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

import tcpulse
import tcpulse.aio
import tcpulse.aio.upload
import tcpulse.upload
from fixtures.official_client.upload_probe import pattern, perform
from objectserver import DROP, ObjectService, digests, object_service  # noqa: F401 - the fixture

PROBE = Path(__file__).parent / "fixtures" / "official_client" / "upload_probe.py"
CREDENTIALS = {"clientId": "tester", "accessToken": "tester-secret-token"}
SMALL, LARGE = 3000, 300_000  # under and over the 8 KiB dataInline limit


class Uploader:
    """Runs one upload spec with one client: tcpulse (sync or aio) here, or the official one."""

    def __init__(self, flavour: str, service: ObjectService, official_python: str = ""):
        self.flavour, self.service, self.official_python = flavour, service, official_python

    def run(self, function: str, size: int, **spec: Any) -> Dict[str, Any]:
        spec = {"rootUrl": self.service.url, "credentials": CREDENTIALS, "function": function, "size": size,
                "name": "project/thing.bin", **spec}
        if self.flavour == "official":
            done = subprocess.run([self.official_python, str(PROBE), "taskcluster", json.dumps(spec)],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)
        return perform(tcpulse, {**spec, "asynchronous": self.flavour == "tcpulse.aio"})


@pytest.fixture(params=["tcpulse", "tcpulse.aio", "official"])
def uploader(request: pytest.FixtureRequest, object_service: ObjectService) -> Uploader:
    official = request.getfixturevalue("current_official_python") if request.param == "official" else ""
    return Uploader(request.param, object_service, official)


def assert_finished_with_the_hashes_of(service: ObjectService, data: bytes) -> None:
    [created], [finished] = service.created, service.finished
    assert finished["uploadId"] == created["uploadId"] and finished["projectId"] == created["projectId"]
    assert finished["hashes"] == digests(data) == service.object_hashes(finished["name"])


def assert_storage_saw_no_credentials(service: ObjectService) -> None:
    assert service.requests and all(seen.client_id == "tester" for seen in service.requests)
    assert all("Authorization" not in put.headers and "bewit" not in put.query for put in service.storage.requests)


@pytest.mark.parametrize("function", ["uploadFromBuf", "upload"])
def test_small_data_goes_inline_when_the_service_picks_it_and_never_reaches_storage(uploader, function):
    assert uploader.run(function, SMALL)["raised"] is None
    [created] = uploader.service.created
    proposed = created["proposedUploadMethods"]
    assert base64.b64decode(proposed["dataInline"]["objectData"]) == pattern(SMALL)
    assert proposed["putUrl"] == {"contentType": "application/octet-stream", "contentLength": SMALL}
    assert uploader.service.storage.requests == []
    assert_finished_with_the_hashes_of(uploader.service, pattern(SMALL))


def test_small_data_goes_to_storage_when_the_service_picks_put_url(uploader):
    uploader.service.offer_inline = False
    assert uploader.run("uploadFromBuf", SMALL, contentType="text/plain")["raised"] is None
    [put] = uploader.service.storage.requests
    assert (put.method, put.path, put.body) == ("PUT", "/bucket/project/thing.bin", pattern(SMALL))
    assert put.headers["Content-Type"] == "text/plain"
    assert_finished_with_the_hashes_of(uploader.service, pattern(SMALL))
    assert_storage_saw_no_credentials(uploader.service)


@pytest.mark.parametrize("function", ["uploadFromBuf", "uploadFromFile", "upload"])
def test_large_data_is_put_to_storage_with_its_length_and_the_hashes_go_to_finish_upload(uploader, function,
                                                                                        tmp_path):
    (tmp_path / "data").write_bytes(pattern(LARGE))
    outcome = uploader.run(function, LARGE, file=str(tmp_path / "data"), uploadId="my-upload-id")
    assert outcome["raised"] is None
    [created] = uploader.service.created
    assert "dataInline" not in created["proposedUploadMethods"] and created["uploadId"] == "my-upload-id"
    [put] = uploader.service.storage.requests
    assert put.complete and put.length == LARGE and put.headers["Content-Length"] == str(LARGE)
    assert_finished_with_the_hashes_of(uploader.service, pattern(LARGE))
    assert_storage_saw_no_credentials(uploader.service)


@pytest.mark.parametrize("failure", [500, DROP])
def test_a_storage_500_or_a_dropped_connection_is_retried_reading_from_the_start(uploader, failure):
    uploader.service.storage.failures = [failure]
    outcome = uploader.run("upload", LARGE)
    assert (outcome["raised"], outcome["readers"]) == (None, 2)
    first, second = uploader.service.storage.requests
    assert second.complete and second.length == LARGE
    assert_finished_with_the_hashes_of(uploader.service, pattern(LARGE))
    assert_storage_saw_no_credentials(uploader.service)


def test_a_4xx_from_storage_is_fatal_and_the_upload_is_not_finished(uploader):
    uploader.service.storage.failures = [403]
    outcome = uploader.run("upload", LARGE)
    assert (outcome["raised"] is not None, outcome["status"], outcome["readers"]) == (True, 403, 1)
    assert len(uploader.service.storage.requests) == 1 and uploader.service.finished == []


def test_retries_stop_after_max_retries(uploader):
    uploader.service.storage.failures = [500, 503, 500]
    outcome = uploader.run("upload", LARGE, maxRetries=1)
    assert (outcome["raised"] is not None, outcome["status"], outcome["readers"]) == (True, 503, 2)
    assert len(uploader.service.storage.requests) == 2 and uploader.service.finished == []


# tcpulse's own errors -------------------------------------------------------------------------

def upload_kwargs(service: ObjectService, data: bytes, **given: Any) -> Dict[str, Any]:
    objects = tcpulse.Object({"rootUrl": service.url, "credentials": CREDENTIALS, "maxRetries": 0})
    return {"projectId": "p", "name": "o", "contentType": "application/octet-stream", "contentLength": len(data),
            "expires": tcpulse.fromNow("1 day"), "objectService": objects, "data": data, **given}


def test_a_storage_4xx_is_a_rest_failure_naming_the_url_without_its_signature(object_service):
    object_service.storage.failures = [403]
    with pytest.raises(tcpulse.TaskclusterRestFailure) as caught:
        tcpulse.upload.uploadFromBuf(**upload_kwargs(object_service, pattern(LARGE)))
    assert str(caught.value) == f"upload of {object_service.storage.url}/bucket/o: HTTP 403 Forbidden"
    assert caught.value.status_code == 403


def test_a_content_length_that_is_not_the_datas_length_is_one_clear_error_and_nothing_is_finished(object_service):
    with pytest.raises(tcpulse.ClientUsageError, match=r"^upload of o: contentLength is 10 but the reader gave "
                                                       r"3000 bytes$"):
        tcpulse.upload.uploadFromBuf(**upload_kwargs(object_service, pattern(SMALL), contentLength=10))
    assert object_service.finished == []


@pytest.mark.parametrize("field, value, expected", [
    ("contentLength", "12", "contentLength must be an int >= 0 (got '12')"),
    ("maxRetries", -1, "maxRetries must be an int >= 0 (got -1)"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(object_service, field, value, expected):
    with pytest.raises(tcpulse.ClientUsageError, match=rf"^upload of o: {expected}$".replace("(", r"\(").replace(")", r"\)")):
        tcpulse.upload.uploadFromBuf(**upload_kwargs(object_service, b"x", **{field: value}))
    assert object_service.requests == []


def test_an_upload_reader_that_gives_text_is_one_clear_error(object_service):
    kwargs = upload_kwargs(object_service, b"abc")
    del kwargs["data"]
    with pytest.raises(tcpulse.ClientUsageError, match=r"read\(\) must return bytes \(got str\)"):
        tcpulse.upload.upload(readerFactory=lambda: __import__("io").StringIO("abc"), **kwargs)


class RecordingReader:
    """A reader over `data` that records the size of each read it was asked for."""

    def __init__(self, data: bytes):
        self.file, self.asked = io.BytesIO(data), []

    def read(self, max_size: int) -> bytes:
        self.asked.append(max_size)
        return self.file.read(max_size)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_put_url_data_is_streamed_in_blocks_never_read_whole(object_service, asynchronous):
    data, readers = pattern(LARGE), []

    def factory() -> RecordingReader:
        readers.append(RecordingReader(data))
        return readers[-1]

    kwargs = upload_kwargs(object_service, data)
    del kwargs["data"]
    if asynchronous:
        async def run() -> None:
            async with tcpulse.aio.Object({"rootUrl": object_service.url, "credentials": CREDENTIALS}) as objects:
                await tcpulse.aio.upload.upload(readerFactory=factory, **{**kwargs, "objectService": objects})
        asyncio.run(run())
    else:
        tcpulse.upload.upload(readerFactory=factory, **kwargs)
    [reader] = readers
    assert max(reader.asked) <= 64 * 1024 and len(reader.asked) >= LARGE // (64 * 1024)
    assert object_service.storage.stored["o"].hashes == digests(data)
