"""REST client options: defaults, checks, the environment, and the service URL they give.

Owns: `DEFAULT_OPTIONS`, `HiddenSecrets` (the credentials option as a dict whose repr hides
the secrets), `optionsFromEnvironment` (the official client's merge: the environment
wins, credentials key by key, the rootUrl's trailing slashes stripped), `client_options` (what
a client built with given or no options uses), `check_options`, and `service_url` (today's
taskcluster-urls rule: `<rootUrl>/api/<service>/<version>`, for every rootUrl, the retired
`https://taskcluster.net` included).

Transport-independent: shared by the requests-based client and the async one. Never imports
auth (hence mohawk), requests or kombu: `tcpulse.optionsFromEnvironment` stays cheap.

Example:
    >>> service_url(client_options({"rootUrl": "https://tc.example.com/"}), "queue", "v1")
    'https://tc.example.com/api/queue/v1'
"""
import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, cast

from tcpulse.errors import ClientUsageError
from tcpulse._api.exchanges import CLIENT_OPTIONS, unknown_option

if TYPE_CHECKING:
    from tcpulse.types import ClientOptions

DEFAULT_OPTIONS: Dict[str, Any] = {"maxRetries": 5, "signedUrlExpiration": 15 * 60, "timeout": 30.0}
_ENVIRONMENT_CREDENTIALS = {"clientId": "TASKCLUSTER_CLIENT_ID", "accessToken": "TASKCLUSTER_ACCESS_TOKEN",
                            "certificate": "TASKCLUSTER_CERTIFICATE"}


class HiddenSecrets(dict):
    """The `credentials` option as given (a plain dict to read), whose repr hides the secrets.

    Example:
        >>> HiddenSecrets({"clientId": "me", "accessToken": "secret"})
        {'clientId': 'me', 'accessToken': '<hidden>'}
    """

    def __repr__(self) -> str:
        shown = {key: value if key == "clientId" or value is None else "<hidden>" for key, value in self.items()}
        return repr(shown)

    __str__ = __repr__


def optionsFromEnvironment(defaults: Optional[Mapping[str, Any]] = None) -> "ClientOptions":
    """Client options from TASKCLUSTER_ROOT_URL, _CLIENT_ID, _ACCESS_TOKEN and _CERTIFICATE.

    What the environment sets wins; `defaults` (not changed) fill the rest, credentials key by key.

    Example:
        >>> optionsFromEnvironment({"maxRetries": 3})["maxRetries"]
        3
    """
    options: Dict[str, Any] = dict(defaults or {})
    if os.environ.get("TASKCLUSTER_ROOT_URL"):
        options["rootUrl"] = os.environ["TASKCLUSTER_ROOT_URL"].rstrip("/")
    credentials = dict(options.get("credentials") or {})
    credentials.update({key: os.environ[var] for key, var in _ENVIRONMENT_CREDENTIALS.items() if os.environ.get(var)})
    if credentials:
        options["credentials"] = credentials
    return cast("ClientOptions", options)  # typed, so `tcpulse.Queue(optionsFromEnvironment())` type-checks


def client_options(given: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The options a client uses: `given` as it is, or the environment's when none are given.

    Defaults fill what is unset, the result is checked, and the credentials option becomes a
    dict whose repr hides its secrets.

    Example:
        >>> client_options({"rootUrl": "https://tc/", "credentials": {"clientId": "a", "accessToken": "b"}})
        {'maxRetries': 5, 'signedUrlExpiration': 900, 'timeout': 30.0, 'rootUrl': 'https://tc', 'credentials': {'clientId': 'a', 'accessToken': '<hidden>'}}
    """
    options = {**DEFAULT_OPTIONS, **(dict(given) if given else optionsFromEnvironment())}
    check_options(options)
    if isinstance(options.get("rootUrl"), str):
        options["rootUrl"] = options["rootUrl"].rstrip("/")
    if isinstance(options.get("credentials"), Mapping):
        options["credentials"] = HiddenSecrets(options["credentials"])
    return options


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ClientUsageError for an unknown option name or a value of the wrong kind.

    Example:
        >>> try:
        ...     check_options({**DEFAULT_OPTIONS, "rootURL": "https://tc"})
        ... except ClientUsageError as error:
        ...     print(str(error).split(" Valid")[0])
        unknown client option 'rootURL'. Did you mean 'rootUrl'?
    """
    for name in options:
        if name not in CLIENT_OPTIONS:
            raise ClientUsageError(unknown_option(name, "client"))
    retries = options.get("maxRetries")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ClientUsageError(f"option 'maxRetries' must be an int >= 0 (got {retries!r})")
    for name in ("timeout", "signedUrlExpiration"):
        value = options.get(name)
        values = value if isinstance(value, (tuple, list)) and name == "timeout" else (value,)
        if not all(is_seconds(v) and v > 0 for v in values):
            raise ClientUsageError(f"option {name!r} must be a number of seconds > 0 (got {value!r})")
    for name in ("rootUrl", "baseUrl"):
        if options.get(name) is not None and not isinstance(options[name], str):
            raise ClientUsageError(f"option {name!r} must be a URL string (got {options[name]!r})")
    if not isinstance(options.get("validate", False), bool):
        raise ClientUsageError(f"option 'validate' must be True or False (got {options['validate']!r})")
    scopes = options.get("authorizedScopes")
    if scopes is not None and (isinstance(scopes, str) or not all(isinstance(s, str) for s in scopes)):
        raise ClientUsageError(f"option 'authorizedScopes' must be a list of scope strings (got {scopes!r})")


def is_seconds(value: Any) -> bool:
    """Whether `value` is a real number (an int or a float, not a bool).

    Example:
        >>> is_seconds(1.5), is_seconds(True), is_seconds("60")
        (True, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def service_url(options: Mapping[str, Any], service_name: Optional[str], api_version: Optional[str]) -> Optional[str]:
    """The URL a service's routes hang from: `baseUrl` as given, else under `rootUrl` (for a named
    service), else None. `options` are `client_options`' (whose rootUrl has no trailing slash).

    Example:
        >>> service_url({"rootUrl": "https://taskcluster.net"}, "queue", "v1")
        'https://taskcluster.net/api/queue/v1'
    """
    if options.get("baseUrl"):
        return options["baseUrl"].rstrip("/")
    root = options.get("rootUrl")
    return f"{root}/api/{service_name}/{api_version}" if root and service_name else None


def no_root_url(label: str) -> ClientUsageError:
    """The one-line error for a call made without any rootUrl, before anything is sent.

    Example:
        >>> str(no_root_url("Queue.task")).startswith("Queue.task: no rootUrl: set TASKCLUSTER_ROOT_URL")
        True
    """
    return ClientUsageError(
        f"{label}: no rootUrl: set TASKCLUSTER_ROOT_URL (read by a client built without options) or "
        f"pass options['rootUrl'], e.g. tcpulse.{label.split('.')[0]}({{'rootUrl': 'https://tc.example.com'}})")
