"""amqps, as Pulse serves it: the listener over TLS (with SNI and the certificate checked against
the host name), through a local TLS terminator in front of the real RabbitMQ."""
import select
import socket
import ssl
import subprocess
import threading

import pytest

from tcpulse import BrokerFailure, Listener, QueueEvents
from listenerkit import Publisher, queue_name, queued, running, task_key, wait_for  # noqa: F401

pytestmark = pytest.mark.rabbitmq
COMPLETED = QueueEvents.taskCompleted


class TlsTerminator:
    """Accepts TLS on 127.0.0.1 with a certificate for 'localhost' and relays the plaintext to
    RabbitMQ; one thread per connection, reading whichever side has data."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.server_names = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self.context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", 5672))
        try:
            while True:
                ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 1)[0]
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is tls else tls).sendall(data)
        except OSError:
            pass
        finally:
            tls.close()
            upstream.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def tls_terminator(tmp_path, monkeypatch, rabbitmq):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust it the way a system CA store would
    terminator = TlsTerminator(str(cert), str(key))
    yield terminator
    terminator.close()


def test_a_listener_over_amqps_sends_sni_verifies_the_host_and_handles_every_message(pulse_user, taskcluster_exchanges, queue_name, tls_terminator):
    url = f"amqps://{pulse_user.name}:{pulse_user.password}@localhost:{tls_terminator.port}//"
    app = Listener(queue_name, broker=url, concurrency=4, prefetch=20)
    seen = []
    app.add_handler(lambda event: seen.append(event.body["n"]), COMPLETED, schedulerId=queue_name)
    with running(app), Publisher(confirm=False) as pub:
        for n in range(500):
            pub.publish(COMPLETED.exchange, task_key(COMPLETED, schedulerId=queue_name), {"n": n})
        wait_for(lambda: app.metrics.get("acked") == 500, what="500 messages acked over TLS")
    assert sorted(seen) == list(range(500)) and "localhost" in tls_terminator.server_names
    assert queued(pulse_user.url, app.queue) == 0


def test_a_certificate_for_another_host_name_is_refused(pulse_user, taskcluster_exchanges, queue_name, tls_terminator):
    app = Listener(queue_name, broker=f"amqps://{pulse_user.name}:pw@127.0.0.1:{tls_terminator.port}//")
    app.add_handler(lambda event: None, COMPLETED, schedulerId=queue_name)
    with pytest.raises(BrokerFailure, match="cannot reach the broker at amqps://.*127.0.0.1.*certificate verify failed"):
        app.run()


def test_treeherders_pulse_url_form_amqp_with_ssl_1_is_tls_to_the_vhost_of_the_path(pulse_user, taskcluster_exchanges, queue_name, tls_terminator):
    # amqp://user:password@host:5671/?ssl=1, as Treeherder documents its PULSE_URL.
    url = f"amqp://{pulse_user.name}:{pulse_user.password}@localhost:{tls_terminator.port}/?ssl=1"
    app = Listener(queue_name, broker=url)
    seen = []
    app.add_handler(lambda event: seen.append(event.body["n"]), COMPLETED, schedulerId=queue_name)
    with running(app), Publisher() as pub:
        for n in range(3):
            pub.publish(COMPLETED.exchange, task_key(COMPLETED, schedulerId=queue_name), {"n": n})
        wait_for(lambda: sorted(seen) == [0, 1, 2], what="3 messages over amqp://...?ssl=1")
    assert app.broker.vhost == "/" and "localhost" in tls_terminator.server_names
