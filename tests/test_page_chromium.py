"""The operator's page of the health port, rendered by real headless Chromium (Debian's
`chromium`): what a person would see (the handlers, their counts, the node, the dead letter),
that it loads nothing from elsewhere and shows no secret; and the documentation's pictures
(scripts/pictures.py), made for real into a temporary folder.

Outside CI the tests skip, saying why, when chromium is missing; under CI=true they fail
(`.ci/run` installs it)."""
import html.parser
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import kombu
import pytest

import tcpulse
from tcpulse._broker.connection import resolve_broker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import pictures  # noqa: E402

pytestmark = pytest.mark.rabbitmq
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chromium():
    binary = pictures.chromium()
    if binary is None:
        message = "chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


class Cells(html.parser.HTMLParser):
    """The text of every table row, and every URL the page would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.rows, self.urls, self._row, self._cell = [], [], None, None

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_the_page_shows_each_handler_with_its_counts_in_chromium(chromium, pulse_user):
    exchange = f"exchange/{pulse_user.name}/page-{uuid.uuid4().hex[:6]}"
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        kombu.Exchange(exchange, "topic", durable=True)(conn.channel()).declare()
    port = pictures.free_port()
    app = pictures.demo_listener(pulse_user.url, exchange, port)
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        pictures._wait(app.is_ready)
        with tcpulse.Publisher(pulse_user.url) as publisher:
            for n in range(8):  # 8 builds; the 4 odd ones are CC'd to a route; build 5 fails its check
                publisher.publish(exchange, {"n": n, "bad": n == 5}, routing_key=f"primary.build.{n}",
                                  routes=["index.project.latest"] if n % 2 else ())
        pictures._wait(lambda: app.metrics.total("dead_lettered") == 1 and app.metrics.total("handled") == 11)
        dom = pictures.dump_dom(f"http://127.0.0.1:{port}/")
    finally:
        app.stop()
        thread.join(20)
        with resolve_broker(pulse_user.url, environ={}).connection() as conn:
            conn.channel().exchange_delete(exchange)
    cells = Cells()
    cells.feed(dom)
    handlers = {row[0]: row[1:3] for row in cells.rows if row and row[0].endswith(("build_finished", "report_checked"))}
    # What a person reads: each handler, how many runs succeeded and how many failed.
    assert handlers == {"pictures.build_finished": ["8", "0"], "pictures.report_checked": ["3", "2"]}, cells.rows
    table = {row[0]: row[1] for row in cells.rows if len(row) == 2}
    assert table["dead letters"] == "1" and table["node"] == "amqp://" + pulse_user.name + ":***@127.0.0.1:5672//"
    totals = next(row for row in cells.rows if row[0] == "total")
    assert totals == ["total", "8", "11", "2"]
    assert "artifact public/report.json is missing" in dom
    assert all(url.startswith("/") for url in cells.urls), cells.urls  # nothing from elsewhere
    assert "<script" not in dom and "<form" not in dom and "<button" not in dom  # read-only
    assert pulse_user.password not in dom and '<meta http-equiv="refresh"' in dom


def test_the_page_json_and_refresh_rates_follow_the_counters():
    from tcpulse._ops.health import HealthServer
    from tcpulse._ops.metrics import Metrics

    class Busy:
        name, queue, metrics = "w", "queue/u/w", Metrics()

        def is_ready(self):
            return True

    busy = Busy()
    with HealthServer(busy, port=0) as server:
        busy.metrics.inc("received", 3)
        busy.metrics.handler_ran("app.h", 0.02, failed=False)
        time.sleep(1.1)  # rates need a second of samples
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/page.json", timeout=5) as resp:
            data = json.loads(resp.read())
    [listener] = data
    assert listener["totals"] == {"received": 3, "handled": 1, "failed": 0}
    assert listener["per_minute"]["received"] > 0
    assert listener["handlers"] == [{"handler": "app.h", "handled": 1, "failed": 0, "p50": 0.015, "p95": 0.024,
                                     "p99": 0.0248}]


def test_the_pictures_script_makes_both_pngs(chromium, rabbitmq, taskcluster_exchanges, tmp_path):
    page = pictures.page_picture(tmp_path, rabbitmq)
    tail = pictures.tail_picture(tmp_path, rabbitmq)
    for path in (page, tail):
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, path
    assert not list(tmp_path.glob("*.html"))
