"""Internal: the REST client's core, shared by the sync and the async clients.

`options` (client options, the environment, URLs), `calls` (binding a call's arguments),
`clientcore` (answers to results or errors), `artifacts` (download rules), `uploading` (upload
rules). The public faces are `tcpulse.client`, `tcpulse.auth`, `tcpulse.download`,
`tcpulse.upload` and `tcpulse.aio`.
"""
