"""The listener's connection-thread machinery without a broker: batched acks (one multiple ack
over a settled prefix, singles out of order, never an unfinished message) and the handler pool."""
import random

from tcpulse._listen.acks import AckWindow


def window():
    sent = []
    return AckWindow(lambda tag, multiple: sent.append((tag, multiple))), sent


def acked_by(sent, delivered):
    """The tags a broker acks for the basic.ack calls `sent`, as RabbitMQ does: a multiple ack
    covers every outstanding tag up to its own; acking a tag that is not outstanding is the
    channel error 'unknown delivery tag'."""
    outstanding, done = set(delivered), set()
    for tag, multiple in sent:
        assert tag in outstanding, f"PRECONDITION_FAILED - unknown delivery tag {tag}"
        covered = {t for t in outstanding if t <= tag} if multiple else {tag}
        outstanding -= covered
        done |= covered
    return done


def test_messages_finished_in_order_are_acked_with_one_multiple_ack():
    w, sent = window()
    for tag in range(1, 51):
        w.delivered(tag)
        w.ack(tag)
    assert w.flush() == 50 and sent == [(50, True)] and w.unsettled == 0


def test_an_unfinished_message_is_never_covered_and_does_not_hold_back_later_acks():
    w, sent = window()
    for tag in range(1, 6):
        w.delivered(tag)
    for tag in (1, 2, 4, 5):
        w.ack(tag)
    assert w.flush() == 4
    assert sent == [(2, True), (4, False), (5, False)]
    w.ack(3)
    w.flush()
    assert sent[-1] == (3, True) and w.unsettled == 0


def test_random_completion_orders_ack_exactly_the_finished_messages():
    rng = random.Random(7)
    for _ in range(200):
        w, sent = window()
        tags = list(range(1, 41))
        for tag in tags:
            w.delivered(tag)
        finished = set()
        for tag in rng.sample(tags, rng.randint(0, 40)):
            w.ack(tag)
            finished.add(tag)
            if rng.random() < 0.3:
                w.flush()
        w.flush()
        assert acked_by(sent, tags) == finished


def test_reset_forgets_the_tags_of_a_lost_channel():
    w, sent = window()
    w.delivered(1)
    w.ack(1)
    w.reset()
    assert w.flush() == 0 and sent == [] and w.unsettled == 0


def test_a_crashing_job_leaves_the_pool_thread_alive_for_the_next():
    import time
    from tcpulse._listen.pool import WorkerPool

    def work(message):
        if message == "bad":
            raise RuntimeError("bug")
        return message, {}
    pool = WorkerPool(1, work)
    pool.submit(pool.epoch, ["bad", "good"])
    deadline = time.monotonic() + 5
    while not pool.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(pool.done) == [(0, "good", ("good", {}))] and pool.running == 0
    pool.close()


def test_submitted_work_counts_as_busy_before_a_thread_takes_it_and_skipped_work_stops_counting():
    import threading
    import time
    from tcpulse._listen.pool import WorkerPool

    def until(condition):
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)

    release = threading.Event()
    pool = WorkerPool(1, lambda message: (release.wait(5), {}))
    pool.submit(pool.epoch, ["first"])
    pool.submit(pool.epoch, ["second", "third"])  # waits behind "first": queued, not started
    until(lambda: pool.running == 1)
    assert pool.busy() and pool.pending == 3 and pool.busy(started_only=True)
    pool.set_epoch(None)  # stopping: what has not started is skipped
    release.set()
    until(lambda: pool.pending == 0)
    assert pool.pending == 0 and [m for _, m, _ in pool.done] == ["first"]
    pool.close()
