"""`tcpulse.auth`: where the official client keeps the Auth service, and tcpulse's public
credential helpers.

Owns nothing itself. `Auth` is the Auth service's class of the active reference set, built on
first use (the very object `tcpulse.Auth` is), so `from taskcluster.auth import Auth` becomes
`from tcpulse.auth import Auth`. `Credentials` and `createTemporaryCredentials` come from
`tcpulse._rest.hawk`, which signs requests (Hawk, bewits, temporary credentials).

Example:
    >>> from tcpulse.auth import Auth, Credentials
    >>> import tcpulse
    >>> Auth is tcpulse.Auth, Credentials.from_option({"clientId": "me", "accessToken": "secret"})
    (True, Credentials(clientId='me', accessToken=<hidden>, certificate=None))
"""
from typing import Any

from tcpulse._rest.hawk import Credentials, createTemporaryCredentials

__all__ = ["Auth", "Credentials", "createTemporaryCredentials"]


def __getattr__(name: str) -> Any:
    if name == "Auth":
        from tcpulse._api.services import generated_class

        return generated_class(__name__.rpartition(".")[0], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
