"""tcpulse.download against a fake Queue + Object + storage server (tests/artifactserver.py), with
the official client's names, keywords and results."""
import gzip
import hashlib
import io
import json
import logging
from pathlib import Path

import pytest

import tcpulse
import tcpulse.download as download
from artifactserver import Blob, artifact_server  # noqa: F401 - the fixture
from hawkserver import other_server  # noqa: F401 - the fixture

TEXT = b"hello from the build\n" * 1000
OFFICIAL = Path(__file__).parent / "fixtures" / "official_client"


def test_gzip_and_content_types_come_out_as_the_official_clients_did(artifact_server):
    case = json.loads((OFFICIAL / "cases.json").read_text())["download"]
    observed = json.loads((OFFICIAL / "observed.json").read_text())["downloads"]
    text = case["text"].encode()
    artifact_server.store("T", 0, "gz", "s3", Blob(text, case["content_type"], gzip=True))
    artifact_server.store("T", 0, "ref", "reference", Blob(text, None))
    for name in ("gz", "ref"):
        data, kind = download.downloadArtifactToBuf(taskId="T", name=name, queueService=artifact_server.queue)
        assert {"text": data.decode(), "contentType": kind} == observed[name]


@pytest.mark.parametrize("storage", ["s3", "reference", "object"])
def test_each_storage_type_downloads_the_latest_runs_bytes_and_content_type(artifact_server, storage):
    artifact_server.store("T", 0, "public/log.txt", storage, Blob(b"old run"), latest=False)
    artifact_server.store("T", 1, "public/log.txt", storage, Blob(TEXT, "text/plain; charset=utf-8"))
    data, kind = download.downloadArtifactToBuf(taskId="T", name="public/log.txt",
                                                queueService=artifact_server.queue)
    assert (data, kind) == (TEXT, "text/plain")


@pytest.mark.parametrize("storage", ["s3", "reference", "object"])
def test_a_given_run_downloads_that_runs_artifact(artifact_server, storage):
    artifact_server.store("T", 0, "public/x.bin", storage, Blob(b"run zero"), latest=False)
    artifact_server.store("T", 1, "public/x.bin", storage, Blob(b"run one"))
    data, _ = download.downloadArtifactToBuf(taskId="T", runId=0, name="public/x.bin", queueService=artifact_server.queue)
    assert data == b"run zero"
    queue_paths = [seen.path for seen in artifact_server.requests if seen.path.startswith("/api/queue/")]
    assert queue_paths == ["/api/queue/v1/task/T/runs/0/artifact-content/public%2Fx.bin"]


@pytest.mark.parametrize("storage", ["s3", "reference", "object"])
def test_storage_urls_never_receive_credentials(artifact_server, storage):
    artifact_server.store("T", 0, "private/x", storage, Blob(TEXT))
    queue = tcpulse.Queue({"rootUrl": artifact_server.url, "credentials": {"clientId": "tester",
                                                                            "accessToken": "tester-secret-token"}})
    download.downloadArtifactToBuf(taskId="T", name="private/x", queueService=queue)
    assert artifact_server.requests[0].client_id == "tester"  # the Queue call is signed and verified
    stored = artifact_server.storage_requests()
    assert stored and all("Authorization" not in seen.headers and "bewit" not in seen.query for seen in stored)


def test_an_object_artifact_is_fetched_through_the_object_service_with_the_artifacts_credentials(artifact_server):
    artifact_server.store("T", 0, "public/x", "object", Blob(TEXT))
    download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue)
    start = next(seen for seen in artifact_server.requests if seen.path.startswith("/api/object/"))
    assert (start.method, start.path, start.auth_error) == ("PUT", "/api/object/v1/start-download/t%2FT%2F0%2Fpublic%2Fx", None)
    assert start.client_id == "task-client/T/0" and start.ext["certificate"]["issuer"] == "issuer"


def test_an_error_artifact_raises_artifact_error_with_message_and_reason(artifact_server):
    artifact_server.store("T", 0, "public/gone", "error", message="file was not there", reason="file-missing-on-worker")
    with pytest.raises(tcpulse.TaskclusterArtifactError, match=r"^file was not there$") as caught:
        download.downloadArtifactToBuf(taskId="T", name="public/gone", queueService=artifact_server.queue)
    assert caught.value.reason == "file-missing-on-worker" and artifact_server.storage_requests() == []


def test_a_hash_mismatch_raises_and_is_not_retried(artifact_server):
    blob = Blob(TEXT)
    blob.hashes["sha256"] = hashlib.sha256(b"something else").hexdigest()
    artifact_server.store("T", 0, "public/x", "object", blob)
    with pytest.raises(tcpulse.ObjectHashVerificationError, match=r"^Validation of object data's sha256 hash failed$"):
        download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue)
    assert len(artifact_server.storage_requests()) == 1


def test_an_object_without_acceptable_hashes_is_refused(artifact_server):
    artifact_server.store("T", 0, "public/x", "object", Blob(TEXT, hashes={"md5": "x"}))
    with pytest.raises(tcpulse.ObjectHashVerificationError, match=r"^No acceptable hashes found in object metadata"):
        download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue)


@pytest.mark.parametrize("storage", ["s3", "object"])
def test_a_5xx_and_a_cut_mid_stream_are_retried_and_the_file_holds_only_the_good_copy(artifact_server, storage, tmp_path,
                                                                                       caplog):
    big = bytes(range(256)) * 4096  # 1 MiB, several chunks
    artifact_server.store("T", 0, "public/big", storage, Blob(big, failures=[503, ("cut", 300_000)]))
    with open(tmp_path / "big", "wb") as file, caplog.at_level(logging.WARNING, logger="tcpulse.download"):
        file.write(b"left over from before" * 100_000)
        kind = download.downloadArtifactToFile(file, taskId="T", name="public/big", queueService=artifact_server.queue)
    assert (tmp_path / "big").read_bytes() == big and kind == "application/octet-stream"
    assert len(artifact_server.storage_requests()) == 3
    assert "HTTP 503" in caplog.text and "attempt 3 of 6" in caplog.text and "X-Amz-Signature" not in caplog.text


def test_retries_stop_after_max_retries_with_the_last_error(artifact_server):
    artifact_server.store("T", 0, "public/x", "s3", Blob(TEXT, failures=[500, 502, 500]))
    with pytest.raises(tcpulse.TaskclusterRestFailure, match=r"download of http://127.0.0.1:\d+/storage/T/0/public/x: "
                                                             r"HTTP 502 Bad Gateway$") as caught:
        download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue, maxRetries=1)
    assert caught.value.status_code == 502 and len(artifact_server.storage_requests()) == 2


def test_a_4xx_from_storage_is_not_retried(artifact_server):
    artifact_server.store("T", 0, "public/x", "s3", Blob(TEXT, failures=[403]))
    with pytest.raises(tcpulse.TaskclusterRestFailure, match=r"HTTP 403 Forbidden") as caught:
        download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue)
    assert caught.value.status_code == 403 and len(artifact_server.storage_requests()) == 1


@pytest.mark.parametrize("storage", ["s3", "object"])
def test_gzip_content_encoding_is_decoded_before_writing_and_hashing(artifact_server, storage):
    artifact_server.store("T", 0, "public/log.txt", storage, Blob(TEXT, "text/plain", gzip=True))
    data, kind = download.downloadArtifactToBuf(taskId="T", name="public/log.txt", queueService=artifact_server.queue)
    assert (data, kind) == (TEXT, "text/plain")
    assert artifact_server.storage_requests()[-1].headers.get("Accept-Encoding", "").startswith("gzip")
    assert len(gzip.compress(TEXT)) < len(TEXT) / 10  # what travelled was the compressed form


def test_an_expired_object_url_is_renewed_before_a_retry(artifact_server):
    artifact_server.url_lifetime = -artifact_server.url_lifetime
    artifact_server.store("T", 0, "public/x", "object", Blob(TEXT, failures=[500]))
    download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue)
    assert artifact_server.start_downloads == 2


def test_objects_download_directly_with_the_object_service(artifact_server, tmp_path):
    artifact_server.store("T", 0, "public/x", "object", Blob(TEXT, "application/json"))
    credentials = artifact_server.objects["t/T/0/public/x"][1]
    objects = tcpulse.Object({"rootUrl": artifact_server.url, "credentials": credentials})
    assert download.downloadToBuf(name="t/T/0/public/x", objectService=objects) == (TEXT, "application/json")
    with open(tmp_path / "x", "wb") as file:
        assert download.downloadToFile(file, name="t/T/0/public/x", objectService=objects) == "application/json"
    assert (tmp_path / "x").read_bytes() == TEXT
    chunks = []
    kind = download.download(name="t/T/0/public/x", objectService=objects,
                             writerFactory=lambda: chunks.clear() or io.BytesIO())
    assert kind == "application/json"


def test_a_writer_factory_gets_a_fresh_writer_per_attempt(artifact_server):
    artifact_server.store("T", 0, "public/x", "s3", Blob(TEXT, failures=[("cut", 100)]))
    writers = []

    def factory():
        writers.append(io.BytesIO())
        return writers[-1]

    download.downloadArtifact(taskId="T", name="public/x", queueService=artifact_server.queue, writerFactory=factory)
    assert len(writers) == 2 and writers[-1].getvalue() == TEXT and len(writers[0].getvalue()) <= 100


@pytest.mark.parametrize("location", ["http://plain.example/x", "ftp://other.example/x"])
def test_a_redirect_from_https_to_anything_but_https_is_refused(location):
    with pytest.raises(tcpulse.TaskclusterFailure, match=r"^download of https://storage.example/x: refusing a "
                                                         r"redirect from https to \w+ URL \w+://\w+.example/x$"):
        download.redirect_target("https://storage.example/x?sig=1", location)


def test_a_refused_redirect_names_its_urls_without_user_and_password():
    with pytest.raises(tcpulse.TaskclusterFailure) as caught:
        download.redirect_target("https://me:se@cret@storage.example:8443/x", "http://you:hunter2@plain.example/y")
    assert str(caught.value) == ("download of https://storage.example:8443/x: refusing a redirect from https to "
                                 "http URL http://plain.example/y")


def test_redirects_between_http_or_https_origins_are_followed():
    assert download.redirect_target("http://a.example/x", "https://b.example/y") == "https://b.example/y"
    assert download.redirect_target("https://a.example/x", "//b.example/y") == "https://b.example/y"


def test_a_redirect_to_another_origin_is_followed_without_credentials(artifact_server, other_server):
    artifact_server.store("T", 0, "public/x", "reference", Blob(TEXT))
    artifact_server.artifacts[("T", "0", "public/x")]["url"] = other_server.url + "/moved"
    other_server.script = [(302, b"", {"Location": artifact_server.url + "/storage/T/0/public/x"})]
    queue = tcpulse.Queue({"rootUrl": artifact_server.url, "credentials": {"clientId": "tester",
                                                                            "accessToken": "tester-secret-token"}})
    assert download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=queue)[0] == TEXT
    hops = [*other_server.requests, *artifact_server.storage_requests()]
    assert [seen.path for seen in hops] == ["/moved", "/storage/T/0/public/x"]
    assert all("Authorization" not in seen.headers for seen in hops)


def test_a_storage_error_after_a_redirect_to_a_url_with_a_password_does_not_show_the_password(artifact_server,
                                                                                               other_server):
    artifact_server.store("T", 0, "public/x", "reference", Blob(TEXT))
    artifact_server.artifacts[("T", "0", "public/x")]["url"] = other_server.url + "/moved"
    port = artifact_server.server_address[1]
    other_server.script = [(302, b"", {"Location": f"http://user:hunter2@127.0.0.1:{port}/storage/T/0/public/x"})]
    with pytest.raises(tcpulse.TaskclusterRestFailure) as caught:
        download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue)
    assert str(caught.value) == f"download of http://127.0.0.1:{port}/storage/T/0/public/x: HTTP 401 Unauthorized"
    assert artifact_server.storage_requests()[0].headers["Authorization"].startswith("Basic ")  # the URL had it


def test_a_queue_client_with_a_connect_and_read_timeout_pair_downloads(artifact_server):
    artifact_server.store("T", 0, "public/x", "object", Blob(TEXT))
    queue = tcpulse.Queue({"rootUrl": artifact_server.url, "timeout": [5, 30]})
    assert download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=queue)[0] == TEXT


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_to_a_signed_url_shows_the_signature_nowhere(artifact_server, caplog):
    """Issue 18 item 7: requests quotes the URL, query and all, in its ConnectionError text; that
    text reached the retry warnings, TaskclusterConnectionError and its superExc."""
    import traceback

    artifact_server.store("T", 0, "public/x", "s3", Blob(TEXT))
    signed = f"http://127.0.0.1:{closed_port()}/storage/T/0/public/x?X-Amz-Signature=s3cr3t-signature"
    artifact_server.artifacts[("T", "0", "public/x")]["url"] = signed
    with caplog.at_level(logging.WARNING, logger="tcpulse.download"), \
            pytest.raises(tcpulse.TaskclusterConnectionError) as caught:
        download.downloadArtifactToBuf(taskId="T", name="public/x", queueService=artifact_server.queue, maxRetries=1)
    told = "".join(traceback.format_exception(caught.type, caught.value, caught.tb))
    assert "Connection refused" in str(caught.value) and "retrying" in caplog.text
    for text in (told, caplog.text, repr(caught.value.superExc), str(caught.value.superExc)):
        assert "s3cr3t" not in text
    assert isinstance(caught.value.superExc, __import__("requests").ConnectionError)


@pytest.mark.parametrize("via", ["downloadToFile", "downloadArtifactToFile"])
def test_bytes_that_fail_their_hashes_are_not_left_in_the_file(artifact_server, tmp_path, via):
    """Issue 18 item 7: the file kept the tampered bytes and looked like a finished download."""
    blob = Blob(TEXT)
    blob.hashes["sha256"] = hashlib.sha256(b"something else").hexdigest()
    artifact_server.store("T", 0, "public/x", "object", blob)
    with open(tmp_path / "x", "wb") as file, pytest.raises(tcpulse.ObjectHashVerificationError):
        if via == "downloadToFile":
            _, credentials = artifact_server.objects["t/T/0/public/x"]
            objects = tcpulse.Object({"rootUrl": artifact_server.url, "credentials": credentials})
            download.downloadToFile(file, name="t/T/0/public/x", objectService=objects)
        else:
            download.downloadArtifactToFile(file, taskId="T", name="public/x", queueService=artifact_server.queue)
    assert (tmp_path / "x").read_bytes() == b"" and len(artifact_server.storage_requests()) == 1
