"""The health endpoint closes connections that send no request (issue 18's last finding): each
connection has a thread, so idle ones held forever would pile up threads. Real sockets."""
import socket
import threading
import time
import urllib.request

from tcpulse._ops.health import IDLE_TIMEOUT, HealthServer
from tcpulse._ops.metrics import Metrics


class Flag:
    metrics = Metrics()

    def is_ready(self) -> bool:
        return True


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""  # EOF: the server closed it (it sends nothing on a timeout)
    except socket.timeout:
        return False


def test_idle_and_half_sent_connections_are_closed_and_their_threads_end():
    assert 0 < IDLE_TIMEOUT <= 60  # the default bounds how long a silent client holds a thread
    with HealthServer(Flag(), port=0, idle_timeout=1) as server:
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
        half = socket.create_connection(("127.0.0.1", server.port))
        half.sendall(b"GET /live HTT")  # a request line that never ends
        _wait(lambda: threading.active_count() > before)  # a thread per open connection
        started = time.monotonic()
        assert all(_closed_by_server(sock, 10) for sock in [*idle, half])
        assert time.monotonic() - started < 10
        _wait(lambda: threading.active_count() <= before)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/live", timeout=5) as resp:
            assert resp.status == 200  # and it still serves
        for sock in [*idle, half]:
            sock.close()


def _wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
