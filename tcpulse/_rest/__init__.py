"""Internals of the REST client: signing, calls, options, artifacts and uploads.

Nothing here is public; import from tcpulse, tcpulse.client, tcpulse.download or tcpulse.upload.
"""
