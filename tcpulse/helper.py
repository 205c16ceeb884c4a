"""The official client's `helper`: one deployment's configuration and its secrets.

Owns: `TaskclusterConfig` (the rootUrl, credentials chosen in the official order, service clients
built from them) and `load_secrets` (a secret of the Secrets service, or local secrets, narrowed
to prefixes and checked for required keys), with the official client's arguments and results.

Credentials, by order of preference (`TaskclusterConfig.auth`):
1. `client_id` and `access_token` given to `auth`;
2. `TASKCLUSTER_CLIENT_ID` and `TASKCLUSTER_ACCESS_TOKEN` (only when `auth` was given neither);
3. inside a task (`TASK_ID` set): no credentials, and the rootUrl of the Taskcluster proxy
   (`TASKCLUSTER_PROXY_URL`, default `http://taskcluster`), which signs for the task;
4. none: the deployment's rootUrl without credentials.

Where the official helper fails an `assert`, this one raises `ClientUsageError` with what was
expected; `get_service` also finds services whose class name has inner capitals
(`"workerManager"`, `"purgecache"`), which the official `str.capitalize()` lookup misses.
The deprecated `upload_artifact` is left out: use `tcpulse.upload`.

Imports nothing that loads requests until a service client is built.

Example:
    >>> from tcpulse.helper import TaskclusterConfig
    >>> config = TaskclusterConfig("https://tc.example.com")
    >>> config.auth(client_id="me", access_token="secret")
    >>> config.get_service("queue").options["rootUrl"]
    'https://tc.example.com'
"""
import logging
import os
from typing import Any, Dict, Iterable, Mapping, Optional

from tcpulse.errors import ClientUsageError, TaskclusterFailure

__all__ = ["TaskclusterConfig", "load_secrets"]

log = logging.getLogger("tcpulse.helper")
DEFAULT_PROXY_URL = "http://taskcluster"


class TaskclusterConfig:
    """A deployment (`url`, else `TASKCLUSTER_ROOT_URL`) and the options its clients are built with.

    Example:
        >>> TaskclusterConfig("https://tc.example.com").default_url
        'https://tc.example.com'
    """

    def __init__(self, url: Optional[str] = None):
        self.options: Optional[Dict[str, Any]] = None
        self.secrets: Optional[Dict[str, Any]] = None
        self.default_url = url if url is not None else os.environ.get("TASKCLUSTER_ROOT_URL")
        if self.default_url is None:
            raise ClientUsageError("TaskclusterConfig needs a deployment: pass url=... or set TASKCLUSTER_ROOT_URL")

    def __repr__(self) -> str:
        credentials = (self.options or {}).get("credentials")
        who = f", clientId={credentials['clientId']!r}" if credentials else ""
        return f"TaskclusterConfig({self.default_url!r}{who})"

    def auth(self, client_id: Optional[str] = None, access_token: Optional[str] = None, max_retries: int = 12) -> None:
        """Choose the credentials (explicit, environment, the task's proxy, none) and set `options`.

        Example:
            >>> config = TaskclusterConfig("https://tc.example.com")
            >>> config.auth(client_id="me", access_token="secret", max_retries=3)
            >>> config.options["credentials"]["clientId"], config.options["maxRetries"]
            ('me', 3)
        """
        options: Dict[str, Any] = {"maxRetries": max_retries}
        if client_id is None and access_token is None:
            client_id = os.environ.get("TASKCLUSTER_CLIENT_ID")
            access_token = os.environ.get("TASKCLUSTER_ACCESS_TOKEN")
            log.info("Taskcluster credentials from the environment, if any")
        else:
            log.info("Taskcluster credentials given to auth()")
        if client_id is not None and access_token is not None:
            options["credentials"] = {"clientId": client_id, "accessToken": access_token}
            options["rootUrl"] = self.default_url
        elif "TASK_ID" in os.environ:
            log.info("inside a task: using the Taskcluster proxy")
            options["rootUrl"] = os.environ.get("TASKCLUSTER_PROXY_URL", DEFAULT_PROXY_URL)
        else:
            log.info("no Taskcluster credentials")
            options["rootUrl"] = self.default_url
        self.options = options

    def get_service(self, service_name: str, use_async: bool = False) -> Any:
        """A client of service `service_name` ("queue", "secrets", "workerManager", ...) with
        these options (`auth()` first if it was not called); `use_async` gives a `tcpulse.aio` one.

        Example:
            >>> TaskclusterConfig("https://tc.example.com").get_service("index").__class__.__name__
            'Index'
        """
        if self.options is None:
            self.auth()
        return service_class(service_name, use_async)(self.options)

    def load_secrets(self, secret_name: Optional[str], prefixes: Iterable[str] = (), required: Iterable[str] = (),
                     existing: Optional[Mapping[str, Any]] = None,
                     local_secrets: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """`load_secrets` through this configuration's Secrets client; also kept in `self.secrets`.

        Example:
            >>> config = TaskclusterConfig("https://tc.example.com")
            >>> config.load_secrets(None, local_secrets={"API_KEY": "k"})
            {'API_KEY': 'k'}
        """
        self.secrets = load_secrets(self.get_service("secrets"), secret_name, prefixes, required, existing,
                                    local_secrets)
        return self.secrets


def service_class(service_name: str, use_async: bool = False) -> type:
    """The API class of the active set named `service_name`, case aside ("queue" -> Queue).

    Example:
        >>> service_class("workermanager").__name__
        'WorkerManager'
    """
    from tcpulse.references import active_set

    names = {name.lower(): name for name in active_set().names("api")}
    found = names.get(str(service_name).lower())
    if found is None:
        raise ClientUsageError(f"get_service: {service_name!r} is not a Taskcluster service of the active reference "
                               f"set (services: {', '.join(sorted(names))})")
    if use_async:
        import tcpulse.aio
        return getattr(tcpulse.aio, found)  # type: ignore[no-any-return]
    import tcpulse
    return getattr(tcpulse, found)  # type: ignore[no-any-return]


def load_secrets(secrets_service: Any, secret_name: Optional[str], prefixes: Iterable[str] = (),
                 required: Iterable[str] = (), existing: Optional[Mapping[str, Any]] = None,
                 local_secrets: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The secrets of `secret_name` (or of `local_secrets` when it is a dict, for local
    development: then nothing is fetched) over a copy of `existing`: all of them, or with
    `prefixes` the merged values under each of those keys in order; every key in `required`
    must be there.

    Example:
        >>> load_secrets(None, None, prefixes=["common", "app"], required=["TOKEN"],
        ...              local_secrets={"common": {"TOKEN": "t", "LEVEL": 1}, "app": {"LEVEL": 3}})
        {'TOKEN': 't', 'LEVEL': 3}
    """
    secrets: Dict[str, Any] = dict(existing or {})
    if isinstance(local_secrets, dict):
        log.info("using the local secrets given")
        everything = local_secrets
    else:
        if secret_name is None:
            raise ClientUsageError("load_secrets needs a secret_name (or local_secrets, a dict)")
        everything = secrets_service.get(secret_name).get("secret", {})
        log.info("loaded the Taskcluster secret %s", secret_name)
    prefixes = list(prefixes)
    if prefixes:
        for prefix in prefixes:
            secrets.update(everything.get(prefix, {}))
    else:
        secrets.update(everything)
    for key in required:
        if key not in secrets:
            where = f" under {', '.join(prefixes)}" if prefixes else ""
            raise TaskclusterFailure(f"Missing value {key} in secrets{where} (secret {secret_name!r}).")
    return secrets
