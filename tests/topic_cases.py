"""The one table of AMQP topic-matching cases: (binding pattern, routing key, matches?).

Expectations are written by hand from AMQP's rules as RabbitMQ applies them (`*` exactly one
word, `#` zero or more words, the empty key has zero words, empty words are words); the
listener's tests check the pure matcher against them and RabbitMQ itself against them, and the
embedded broker's tests reuse the same table.
"""
from typing import List, Tuple

TOPIC_CASES: List[Tuple[str, str, bool]] = [
    # '#' alone: anything, even the empty key
    ("#", "", True), ("#", "a", True), ("#", "a.b.c", True), ("#", "a..b", True),
    # '#' matching zero words at the start, in the middle, at the end
    ("#.a", "a", True), ("#.a", "x.a", True), ("#.a", "x.y.a", True), ("#.a", "a.x", False),
    ("a.#.b", "a.b", True), ("a.#.b", "a.x.b", True), ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.b.x", False), ("a.#.b", "a", False),
    ("a.#", "a", True), ("a.#", "a.b", True), ("a.#", "a.b.c", True), ("a.#", "b.a", False),
    ("a.#", "", False),
    # several '#'
    ("#.#", "", True), ("#.#", "a", True), ("#.#", "a.b", True),
    ("a.#.#", "a", True), ("#.a.#", "a", True), ("#.a.#", "x.a.y", True), ("#.a.#", "b", False),
    ("#.b.#", "b", True), ("a.#.b.#.c", "a.b.c", True), ("a.#.b.#.c", "a.x.b.y.c", True),
    ("a.#.b.#.c", "a.c", False), ("a.#.b.#.c", "a.b.b.c", True),
    # '*' is exactly one word
    ("*", "a", True), ("*", "", False), ("*", "a.b", False),
    ("*.*", "a.b", True), ("*.*", "a", False), ("*.*", "a.b.c", False),
    ("a.*", "a.b", True), ("a.*", "a", False), ("a.*", "a.b.c", False),
    ("*.a", "b.a", True), ("*.a", "a", False),
    # '*' and '#' together
    ("#.*", "", False), ("#.*", "a", True), ("#.*", "a.b", True),
    ("*.#", "a", True), ("*.#", "", False), ("*.#", "a.b.c", True),
    ("a.*.#", "a", False), ("a.*.#", "a.b", True), ("a.*.#", "a.b.c", True),
    ("a.#.*", "a", False), ("a.#.*", "a.b", True), ("a.#.*", "a.b.c", True),
    ("#.a.*", "a.b", True), ("#.a.*", "x.a.b", True), ("#.a.*", "a", False),
    ("*.#.*", "a", False), ("*.#.*", "a.b", True), ("*.#.*", "a.b.c.d", True),
    # literal words
    ("a.b", "a.b", True), ("a.b", "a.b.c", False), ("a.b", "a", False), ("a.b", "b.a", False),
    ("a", "a", True), ("a", "b", False), ("a", "", False), ("", "", True), ("", "a", False),
    ("a-b.c_d", "a-b.c_d", True), ("A", "a", False),
    # empty words are words
    ("a.*.b", "a..b", True), ("*", ".", False), ("*.*", ".", True), ("a..b", "a..b", True),
    # Taskcluster shapes: the primary key of task-completed, CC'd index routes
    ("primary.#", "primary", True), ("primary.#", "primary.t1.0", True),
    ("primary.*.*.*.*.*.*.*.g.#", "primary.t.0.wg.w.p.wt.s.g._", True),
    ("primary.*.*.*.*.*.*.*.g.#", "primary.t.0.wg.w.p.wt.s.g", True),
    ("primary.*.*.*.*.*.*.*.g.#", "primary.t.0.wg.w.p.wt.s.h._", False),
    ("primary.*.*.*.*.*.*.*.g.#", "primary.t.0.wg.w.p.wt.g._", False),
    ("route.index.#", "route.index", True), ("route.index.#", "route.index.gecko.v2.latest", True),
    ("route.index.#", "route.notify.email", False), ("route.index.#", "primary.index", False),
]
