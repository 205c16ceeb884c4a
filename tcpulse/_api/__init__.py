"""Internal: the classes generated from the reference sets.

`exchanges` (Exchange entries and the *Events classes), `binding` (routing-key patterns),
`services` (the REST and events classes, built on first use) and `hints` (the did-you-mean
hint). Pure: imports neither kombu nor requests. Users import these names from `tcpulse`.
"""
