"""Temporary credentials, the Hawk ext encoding and credential hiding, checked by independent computation."""
import base64
import datetime
import hashlib
import hmac
import json
import subprocess
import sys

import pytest

import tcpulse
from tcpulse._rest.hawk import Credentials, hawk_ext

START = datetime.datetime(2024, 5, 1, 10, 0, 0)
EXPIRY = START + datetime.timedelta(hours=2)


def expected_signature(token, cert, name=None):
    text = "version:1\n"
    if name:
        text += f"clientId:{name}\nissuer:{cert['issuer']}\n"
    text += f"seed:{cert['seed']}\nstart:{cert['start']}\nexpiry:{cert['expiry']}\nscopes:"
    text += "".join("\n" + scope for scope in cert["scopes"])
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha256).digest()).decode()


def expected_token(token, seed):
    digest = hmac.new(token.encode(), seed.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode().replace("+", "-").replace("/", "_").rstrip("=")


def test_unnamed_temporary_credentials_match_an_independent_computation():
    creds = tcpulse.createTemporaryCredentials("issuer", "issuer-token", START, EXPIRY, ["a", "b:*"])
    cert = json.loads(creds["certificate"])
    assert creds["clientId"] == "issuer" and "issuer" not in cert
    assert list(cert) == ["version", "scopes", "start", "expiry", "seed", "signature"]
    assert (cert["version"], cert["scopes"], len(cert["seed"])) == (1, ["a", "b:*"], 44)
    assert cert["start"] == 1714557600000 and cert["expiry"] == 1714557600000 + 2 * 3600 * 1000
    assert cert["signature"] == expected_signature("issuer-token", cert)
    assert creds["accessToken"] == expected_token("issuer-token", cert["seed"])
    assert " " not in creds["certificate"]


def test_named_temporary_credentials_record_the_issuer_and_sign_the_name():
    creds = tcpulse.createTemporaryCredentials("issuer", "issuer-token", START, EXPIRY, ["a"], name="worker-1")
    cert = json.loads(creds["certificate"])
    assert creds["clientId"] == "worker-1" and cert["issuer"] == "issuer"
    assert cert["signature"] == expected_signature("issuer-token", cert, name="worker-1")
    assert cert["signature"] != expected_signature("issuer-token", cert)


def test_each_temporary_credential_gets_a_fresh_seed_and_token():
    one, two = (tcpulse.createTemporaryCredentials("i", "t", START, EXPIRY, []) for _ in range(2))
    assert one["accessToken"] != two["accessToken"]


def test_aware_datetimes_are_converted_to_utc():
    start = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    creds = tcpulse.createTemporaryCredentials("i", "t", start, start + datetime.timedelta(minutes=1), [])
    assert json.loads(creds["certificate"])["start"] == 1714557600000


@pytest.mark.parametrize("start, expiry, scopes, message", [
    (START, START + datetime.timedelta(days=31, seconds=1), [], r"temporary credentials may last at most 31 days \(got 31 days, 0:00:01\)"),
    (START, START, [], r"expiry \(2024-05-01 10:00:00\) must be after start \(2024-05-01 10:00:00\)"),
    (START, EXPIRY, "queue:*", r"scopes must be a list of strings \(got 'queue:\*'\)"),
    (START, EXPIRY, ["a", 1], r"scopes must be a list of strings"),
])
def test_temporary_credentials_refuse_bad_input_with_a_clear_message(start, expiry, scopes, message):
    with pytest.raises(tcpulse.ClientUsageError, match="createTemporaryCredentials: " + message):
        tcpulse.createTemporaryCredentials("i", "t", start, expiry, scopes)


def official_ext(ext_object):
    # The official client: JSON with compact separators, base64 with newlines removed, then +/ -> -_.
    raw = base64.encodebytes(json.dumps(ext_object, separators=(",", ":")).encode()).strip().replace(b"\n", b"")
    return raw.replace(b"+", b"-").replace(b"/", b"_").decode()


def test_hawk_ext_is_encoded_as_the_official_client_encodes_it():
    creds = tcpulse.createTemporaryCredentials("i", "t", START, EXPIRY, ["x" * 90, "y"])
    cert = json.loads(creds["certificate"])
    temporary = Credentials(creds["clientId"], creds["accessToken"], creds["certificate"])
    assert hawk_ext(Credentials("c", "t")) == official_ext({}) == "e30="
    assert hawk_ext(Credentials("c", "t"), ["s:1"]) == official_ext({"authorizedScopes": ["s:1"]})
    assert hawk_ext(temporary, ["s"]) == official_ext({"certificate": cert, "authorizedScopes": ["s"]})
    assert "\n" not in hawk_ext(temporary) and "=" not in hawk_ext(temporary).rstrip("=")


def test_hawk_ext_matches_the_official_4_0_1_client_byte_for_byte(tmp_path, official_python):
    creds = tcpulse.createTemporaryCredentials("i", "t", START, EXPIRY, ["queue:*"], name="n")
    options = {"credentials": creds, "authorizedScopes": ["queue:a"], "baseUrl": "http://127.0.0.1:9/v1"}
    script = ("import base64, json, sys; base64.encodestring = base64.encodebytes  # removed in Python 3.9\n"
              "import taskcluster; print(taskcluster.Queue(json.loads(sys.argv[1])).makeHawkExt().decode())")
    done = subprocess.run([official_python, "-c", script, json.dumps(options)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ours = hawk_ext(Credentials(creds["clientId"], creds["accessToken"], creds["certificate"]), ["queue:a"])
    assert done.stdout.strip() == ours


def test_credentials_hide_their_secrets_in_repr_and_accept_bytes():
    creds = Credentials(b"me", b"top-secret", '{"signature": "sig-secret"}')
    assert (creds.clientId, creds.accessToken) == ("me", "top-secret")
    for text in (repr(creds), str(creds)):
        assert "top-secret" not in text and "sig-secret" not in text and "<hidden>" in text


def test_a_credential_of_the_wrong_type_names_the_field_but_not_the_value():
    with pytest.raises(tcpulse.ClientUsageError, match=r"credentials: accessToken must be a string \(got int\)"):
        Credentials("me", 12345)


def test_the_utilities_and_temporary_credentials_load_neither_requests_nor_kombu(tmp_path):
    code = ("import sys, datetime, tcpulse; tcpulse.fromNow('1 day'); tcpulse.scopeMatch([], []); "
            "tcpulse.createTemporaryCredentials('i', 't', datetime.datetime(2020, 1, 1), "
            "datetime.datetime(2020, 1, 2), []); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'urllib3', 'kombu')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


@pytest.mark.parametrize("name", [None, "named-temp"])
def test_temporary_credentials_match_the_official_4_0_1_client_given_the_same_seed(tmp_path, monkeypatch, name,
                                                                                   official_python):
    # 4.0.1 cannot run on Python >= 3.9 as shipped (base64.encodestring is gone); put it back.
    script = ("import base64, json, sys, datetime; base64.encodestring = base64.encodebytes\n"
              "import taskcluster.client as c, taskcluster.utils as u\n"
              "u.slugId = lambda: b'fixedSeedHalf_0123456789'\n"
              "s = datetime.datetime(2024, 5, 1, 10)\n"
              "name = sys.argv[1] or None\n"
              "r = c.createTemporaryCredentials('issuer', 'issuer-token', s, s + datetime.timedelta(hours=2),"
              " ['a', 'b:*'], name)\n"
              "print(json.dumps({k: v.decode() if isinstance(v, bytes) else v for k, v in r.items()}))")
    done = subprocess.run([official_python, "-c", script, name or ""], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr("tcpulse._rest.hawk.slugId", lambda: "fixedSeedHalf_0123456789")
    ours = tcpulse.createTemporaryCredentials("issuer", "issuer-token", START, EXPIRY, ["a", "b:*"], name)
    assert ours == json.loads(done.stdout)


def test_signed_urls_match_the_official_4_0_1_client_at_the_same_moment(tmp_path, monkeypatch, official_python):
    options = {"baseUrl": "https://tc/api/queue/v1", "authorizedScopes": ["queue:get-artifact:*"],
               "credentials": {"clientId": "a", "accessToken": "b"}}
    script = ("import base64, json, sys, time; base64.encodestring = base64.encodebytes\n"
              "time.time = lambda: 1700000000.0\n"
              "import taskcluster\n"
              "print(taskcluster.Queue(json.loads(sys.argv[1])).buildSignedUrl('getLatestArtifact', 'abc', 'public/x.log'))")
    done = subprocess.run([official_python, "-c", script, json.dumps(options)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr("time.time", lambda: 1700000000.0)
    ours = tcpulse.Queue(options).buildSignedUrl("getLatestArtifact", "abc", "public/x.log")
    assert ours == done.stdout.strip()
