"""tcpulse.aio.download against the fake Queue + Object + storage server (tests/artifactserver.py):
the sync module's names, keywords, results and errors, awaited, with tcpulse.aio clients."""
import asyncio
import hashlib
import io
import logging

import pytest

import tcpulse
import tcpulse.aio
import tcpulse.aio.download as aio_download
import tcpulse.download as sync_download
from artifactserver import Blob, artifact_server  # noqa: F401 - the fixture
from hawkserver import other_server  # noqa: F401 - the fixture

TEXT = b"hello from the build\n" * 1000
TESTER = {"clientId": "tester", "accessToken": "tester-secret-token"}


def fetch(server, function, *args, options=None, **kwargs):
    """Run one aio download function with a fresh tcpulse.aio.Queue on `server`."""
    async def main():
        async with tcpulse.aio.Queue({"rootUrl": server.url, "maxRetries": 0, **(options or {})}) as queue:
            return await getattr(aio_download, function)(*args, queueService=queue, **kwargs)
    return asyncio.run(main())


@pytest.mark.parametrize("storage", ["s3", "reference", "object"])
def test_each_storage_type_gives_the_latest_runs_bytes_and_what_the_sync_module_gives(artifact_server, storage):
    artifact_server.store("T", 0, "public/log.txt", storage, Blob(b"old run"), latest=False)
    artifact_server.store("T", 1, "public/log.txt", storage, Blob(TEXT, "text/plain; charset=utf-8", gzip=True))
    got = fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="public/log.txt")
    assert got == (TEXT, "text/plain")
    assert got == sync_download.downloadArtifactToBuf(taskId="T", name="public/log.txt", queueService=artifact_server.queue)
    assert fetch(artifact_server, "downloadArtifactToBuf", taskId="T", runId=0, name="public/log.txt")[0] == b"old run"


@pytest.mark.parametrize("storage", ["s3", "reference", "object"])
def test_storage_never_receives_credentials_and_the_object_service_gets_the_artifacts_own(artifact_server, storage):
    artifact_server.store("T", 0, "private/x", storage, Blob(TEXT))
    assert fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="private/x",
                 options={"credentials": TESTER})[0] == TEXT
    assert artifact_server.requests[0].client_id == "tester" and artifact_server.requests[0].auth_error is None
    stored = artifact_server.storage_requests()
    assert stored and all("Authorization" not in seen.headers and "bewit" not in seen.query for seen in stored)
    if storage == "object":
        start = next(seen for seen in artifact_server.requests if seen.path.startswith("/api/object/"))
        assert (start.method, start.client_id, start.auth_error) == ("PUT", "task-client/T/0", None)


def mismatched_hash() -> Blob:
    blob = Blob(TEXT)
    blob.hashes["sha256"] = hashlib.sha256(b"something else").hexdigest()
    return blob


@pytest.mark.parametrize("storage, blob, error", [
    ("error", None, tcpulse.TaskclusterArtifactError),
    ("object", mismatched_hash(), tcpulse.ObjectHashVerificationError),
], ids=["error-artifact", "hash-mismatch"])
def test_an_error_artifact_and_a_hash_mismatch_raise_the_sync_modules_errors_without_retrying(
        artifact_server, storage, blob, error):
    artifact_server.store("T", 0, "public/x", storage, blob, message="file was not there", reason="missing")
    with pytest.raises(error) as from_aio:
        fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="public/x")
    storage_calls = len(artifact_server.storage_requests())
    with pytest.raises(error) as from_sync:
        sync_download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue)
    assert str(from_aio.value) == str(from_sync.value) and str(from_aio.value) in (
        "file was not there", "Validation of object data's sha256 hash failed")
    assert storage_calls == (0 if storage == "error" else 1)


@pytest.mark.parametrize("storage", ["s3", "object"])
def test_a_5xx_and_a_cut_mid_stream_are_retried_and_the_file_holds_only_the_good_copy(artifact_server, storage,
                                                                                       tmp_path, caplog):
    big = bytes(range(256)) * 4096  # 1 MiB, several chunks
    artifact_server.store("T", 0, "public/big", storage, Blob(big, failures=[503, ("cut", 300_000)]))
    with open(tmp_path / "big", "wb") as file, caplog.at_level(logging.WARNING, logger="tcpulse.download"):
        file.write(b"left over from before" * 100_000)
        kind = fetch(artifact_server, "downloadArtifactToFile", file, taskId="T", name="public/big")
    assert (tmp_path / "big").read_bytes() == big and kind == "application/octet-stream"
    assert len(artifact_server.storage_requests()) == 3
    assert "HTTP 503" in caplog.text and "attempt 3 of 6" in caplog.text and "X-Amz-Signature" not in caplog.text


def test_a_4xx_from_storage_is_not_retried_and_5xx_stop_after_max_retries(artifact_server):
    artifact_server.store("T", 0, "public/x", "s3", Blob(TEXT, failures=[403]))
    with pytest.raises(tcpulse.TaskclusterRestFailure, match=r"HTTP 403 Forbidden$") as caught:
        fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="public/x")
    assert caught.value.status_code == 403 and len(artifact_server.storage_requests()) == 1
    artifact_server.store("T", 0, "public/y", "s3", Blob(TEXT, failures=[500, 502, 500]))
    with pytest.raises(tcpulse.TaskclusterRestFailure, match=r"download of http://127.0.0.1:\d+/storage/T/0/public/y: "
                                                             r"HTTP 502 Bad Gateway$"):
        fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="public/y", maxRetries=1)


def test_an_expired_object_url_is_renewed_before_a_retry(artifact_server):
    artifact_server.url_lifetime = -artifact_server.url_lifetime
    artifact_server.store("T", 0, "public/x", "object", Blob(TEXT, failures=[500]))
    assert fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="public/x")[0] == TEXT
    assert artifact_server.start_downloads == 2


def test_objects_download_directly_and_writers_may_be_async(artifact_server, tmp_path):
    artifact_server.store("T", 0, "public/x", "object", Blob(TEXT, "application/json", failures=[("cut", 100)]))
    credentials = artifact_server.objects["t/T/0/public/x"][1]
    written = []

    class AsyncWriter:
        def __init__(self):
            written.append(io.BytesIO())

        async def write(self, chunk):
            await asyncio.sleep(0)
            written[-1].write(chunk)

    async def factory():
        return AsyncWriter()

    async def main():
        async with tcpulse.aio.Object({"rootUrl": artifact_server.url, "credentials": credentials}) as objects:
            with open(tmp_path / "x", "wb") as file:
                to_file = await aio_download.downloadToFile(file, name="t/T/0/public/x", objectService=objects)
            to_buf = await aio_download.downloadToBuf(name="t/T/0/public/x", objectService=objects)
            kind = await aio_download.download(name="t/T/0/public/x", objectService=objects, writerFactory=factory)
            return to_file, to_buf, kind
    assert asyncio.run(main()) == ("application/json", (TEXT, "application/json"), "application/json")
    assert (tmp_path / "x").read_bytes() == TEXT and written[-1].getvalue() == TEXT


def test_a_redirect_to_another_origin_is_followed_without_credentials(artifact_server, other_server):
    artifact_server.store("T", 0, "public/x", "reference", Blob(TEXT))
    artifact_server.artifacts[("T", "0", "public/x")]["url"] = other_server.url + "/moved"
    other_server.script = [(302, b"", {"Location": artifact_server.url + "/storage/T/0/public/x"})]
    assert fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="public/x",
                 options={"credentials": TESTER})[0] == TEXT
    hops = [*other_server.requests, *artifact_server.storage_requests()]
    assert [seen.path for seen in hops] == ["/moved", "/storage/T/0/public/x"]
    assert all("Authorization" not in seen.headers for seen in hops)


def test_a_refused_connection_to_a_signed_url_shows_the_signature_nowhere(artifact_server, caplog):
    import socket
    import traceback

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    artifact_server.store("T", 0, "public/x", "s3", Blob(TEXT))
    artifact_server.artifacts[("T", "0", "public/x")]["url"] = (
        f"http://127.0.0.1:{port}/storage/T/0/public/x?X-Amz-Signature=s3cr3t-signature")
    with caplog.at_level(logging.WARNING, logger="tcpulse.download"), \
            pytest.raises(tcpulse.TaskclusterConnectionError) as caught:
        fetch(artifact_server, "downloadArtifactToBuf", taskId="T", name="public/x", maxRetries=1)
    told = "".join(traceback.format_exception(caught.type, caught.value, caught.tb))
    assert "retrying" in caplog.text
    for text in (told, caplog.text, repr(caught.value.superExc), str(caught.value)):
        assert "s3cr3t" not in text


def test_bytes_that_fail_their_hashes_are_not_left_in_the_file(artifact_server, tmp_path):
    artifact_server.store("T", 0, "public/x", "object", mismatched_hash())
    with open(tmp_path / "x", "wb") as file, pytest.raises(tcpulse.ObjectHashVerificationError):
        fetch(artifact_server, "downloadArtifactToFile", file, taskId="T", name="public/x")
    assert (tmp_path / "x").read_bytes() == b""
