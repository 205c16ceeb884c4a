"""Issue 19 item 7, what a newcomer met: misspelt names get a did-you-mean, REST connection
errors name their cause, the CLI's replay and publish say what they did and what went wrong."""
import asyncio
import socket
import threading

import pytest

import tcpulse
import tcpulse.aio
from faultkit import free_port


def test_a_misspelt_client_method_or_module_name_is_an_attribute_error_with_a_did_you_mean():
    queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    with pytest.raises(AttributeError, match=r"^'Queue' object has no attribute 'taks'\. Did you mean 'tasks?'\?$"):
        queue.taks  # noqa: B018
    with pytest.raises(AttributeError, match=r"^module 'tcpulse' has no attribute 'QueueEvent'\. Did you mean 'QueueEvents'\?$"):
        tcpulse.QueueEvent  # noqa: B018
    with pytest.raises(AttributeError, match=r"no attribute 'Listner'\. Did you mean 'Listener'\?$"):
        tcpulse.Listner  # noqa: B018
    assert not hasattr(queue, "__deepcopy__") and not hasattr(tcpulse, "__wrapped__")


class _Server:
    """A TCP server on 127.0.0.1 that accepts and then, per `answer`, either sends plain HTTP
    (so a TLS client fails its handshake) or says nothing (so the client times out)."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.held = answer, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(client)
            if self.answer:
                client.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()
        for client in self.held:
            client.close()


def _call_ping(root_url: str, asynchronous: bool) -> str:
    options = {"rootUrl": root_url, "maxRetries": 0, "timeout": 1}
    with pytest.raises(tcpulse.TaskclusterConnectionError) as caught:
        if asynchronous:
            async def ping() -> None:
                async with tcpulse.aio.Queue(options) as queue:
                    await queue.ping()
            asyncio.run(ping())
        else:
            tcpulse.Queue(options).ping()
    return str(caught.value)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "aio"])
def test_a_rest_connection_error_names_its_cause_refused_dns_tls_or_timeout(asynchronous):
    assert _call_ping(f"http://127.0.0.1:{free_port()}", asynchronous).startswith("Queue.ping: connection refused (")
    assert "Queue.ping: DNS lookup failed: " in _call_ping("http://no-such-host.invalid", asynchronous)
    plain, silent = _Server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), _Server(b"")
    try:
        assert "Queue.ping: TLS failed: " in _call_ping(f"https://127.0.0.1:{plain.port}", asynchronous)
        assert "Queue.ping: no answer within 1 s (" in _call_ping(f"http://127.0.0.1:{silent.port}", asynchronous)
    finally:
        plain.close()
        silent.close()
