"""The requests sessions of the sync client, downloads, uploads and plain HTTP requests.

Owns: `new_session`, a pooled `requests.Session` that reads the environment once (proxies for
its host, the CA bundle) and nothing else from it: no netrc, so no credentials of its own reach
a storage URL; urllib3 retries nothing (retries are tcpulse's, with backoff and logging).

Imports requests only.

Example:
    >>> new_session("https://tc.example.com").trust_env
    False
"""
import os

import requests
import requests.adapters
import requests.utils


def new_session(base_url: str) -> requests.Session:
    session = requests.Session()
    # Read proxy and CA-bundle settings once: requests would rescan os.environ on every call
    # (a sixth of a call's CPU time), and every call of a client goes to the same host.
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    # Retries are ours (with backoff and logging); urllib3 must not add its own.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
