"""Internal: a listener's message path, from the broker to the handlers and back.

`listener` (the registry and the run), `consumer` (the consume loop), `messages` and `running`
(one message's handlers), `dispatch` (topic matching, Event), `outcome` (the pure ack / retry /
dead-letter decision), `delivery` and `topology` (the broker objects that carry retries and
dead letters), `acks`, `pool`, `looppool`, `shutdown`, `scripts`, `stale`, `backlog`.
Users import `Listener`, `Event` and `on` from `tcpulse`.
"""
