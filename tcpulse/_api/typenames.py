"""How schemas are named: their absolute ids and the TypedDicts of `tcpulse.types` made from them.

Owns: `schema_id` (a schema a reference names relative to its service, such as
'v1/task.json#', as '/schemas/queue/v1/task.json'), and the naming rule of the generated types
(`type_module`, `type_name`, `message_type`): one module per service, named as the official
client names its service modules, one TypedDict per schema file, named from the file. The
generator (scripts/generate_types.py) and the help texts use the same rule.

Pure module: imports only the standard library.

Example:
    >>> message_type(schema_id("queue", "v1/task-completed-message.json#"))
    'tcpulse.types.queue.TaskCompletedMessage'
"""
import posixpath
import re


def schema_id(service_name: str, relative: str) -> str:
    """The absolute id of a schema a reference names relative to its service.

    Example:
        >>> schema_id("queue", "v1/task-completed-message.json#")
        '/schemas/queue/v1/task-completed-message.json'
    """
    if relative.startswith("/"):
        return relative.split("#")[0]
    return f"/schemas/{service_name}/{relative.split('#')[0]}"


def camel(text: str) -> str:
    """Words of `text` joined in CamelCase.

    Example:
        >>> camel("list-lastFires-response"), camel("task-completed-message")
        ('ListLastFiresResponse', 'TaskCompletedMessage')
    """
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words)
    return name if name[:1].isalpha() else "T" + name


def type_module(service_name: str) -> str:
    """The module of a service's types: 'worker-manager' -> 'workermanager'."""
    return service_name.replace("-", "")


def type_name(schema: str) -> str:
    """The TypedDict of a schema file: 'v1/task.json#' -> 'Task'."""
    stem = posixpath.basename(schema.split("#")[0])
    return camel(stem[:-len(".json")] if stem.endswith(".json") else stem)


def message_type(sid: str) -> str:
    """The full name of the TypedDict of schema `sid` ('/schemas/<service>/...')."""
    service = sid.strip("/").split("/")[1]
    return f"tcpulse.types.{type_module(service)}.{type_name(sid)}"
