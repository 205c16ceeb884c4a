"""Finding the listener in a user's handler script, for `tcpulse listen`, `bindings` and `record`.

Owns: importing the script as a module named after its file (so handler names read
`task_group_watcher.completed`, also when the script runs as `python task_group_watcher.py`:
`tcpulse._listen.naming`) without letting its name or its folder shadow any module, and
finding its listeners: the `Listener`s it defines (several for several Pulse sources), else
the default listener its module-level `tcpulse.on` handlers registered on. Anything else is a
`ScriptError` that explains what a script should look like.

Imports neither kombu nor requests (the listener loads kombu only when it runs).

Example:
    >>> load_listener("no-such-script.py")
    Traceback (most recent call last):
    ...
    tcpulse._listen.scripts.ScriptError: no-such-script.py: no such file
"""
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, List

from tcpulse._listen.naming import script_module
from tcpulse.errors import TaskclusterFailure

EXPECTED = ("a handler script registers functions with `@tcpulse.on(QueueEvents.taskCompleted, ...)`, "
            "or defines `app = tcpulse.Listener('name')` and uses `@app.on(...)`")


class ScriptError(TaskclusterFailure, ValueError):
    """The script is missing, fails to import, defines no listener with handlers, or defines
    several where one is expected."""


def load_listeners(path: str) -> List[Any]:
    """Import the script at `path` and return the `Listener`s it defines, in the order it
    defines them (else the default listener of its `tcpulse.on` handlers); each must have a
    handler.

    Example:
        >>> [l.name for l in load_listeners("examples/two_deployments.py")]
        ['firefox-ci', 'community-tc']
    """
    from tcpulse._listen.listener import Listener, default_listener, reset_default_listener

    # A fresh default listener per load, so that loading several scripts in one process
    # (tests do) never mixes their module-level `tcpulse.on` handlers.
    reset_default_listener()
    module = _import(path)
    # Module globals keep their order of assignment; a listener bound to two names counts once.
    listeners: List[Any] = list({id(v): v for v in vars(module).values() if isinstance(v, Listener)}.values())
    listeners = listeners or [default_listener()]
    for listener in listeners:
        if not listener.handlers:
            named = "" if len(listeners) == 1 else f" on listener {listener.label!r}"
            raise ScriptError(f"{path}: registers no handlers{named}; {EXPECTED}")
    return listeners


def load_listener(path: str) -> Any:
    """Import the script at `path` and return the one `Listener` whose handlers it registers
    (for what takes one listener, as the test harness does)."""
    listeners = load_listeners(path)
    if len(listeners) > 1:
        raise ScriptError(f"{path}: defines {len(listeners)} listeners "
                          f"({', '.join(l.label for l in listeners)}) where one is expected")
    return listeners[0]


def _import(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise ScriptError(f"{path}: no such file")
    name = script_module(path)  # what `python <path>` names its handlers after, too
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    if _free(name, file):
        sys.modules[name] = module  # what dataclasses and pickle look a class's module up by
    # The script may import its neighbours, but after everything installed: a stray amqp.py
    # beside it must not replace the library.
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        frame = next((f for f in reversed(traceback.extract_tb(exc.__traceback__))
                      if Path(f.filename).resolve() == file.resolve()), None)
        where = f" (line {frame.lineno})" if frame else ""
        raise ScriptError(f"{path}: failed to load{where}: {type(exc).__name__}: {exc}") from None
    return module


def _free(name: str, file: Path) -> bool:
    """Whether module `name` may be registered for the script at `file`: no other module of that
    name is imported or importable (a script called queue.py must not replace the standard
    library's queue for kombu; it then runs unregistered, under its own name all the same)."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return _is_file(getattr(loaded, "__file__", None), file)
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return found is None or _is_file(found.origin, file)


def _is_file(origin: Any, file: Path) -> bool:
    return isinstance(origin, str) and Path(origin).resolve() == file.resolve()
