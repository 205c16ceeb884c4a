"""Finding the listener in a user's handler script, for `tcpulse listen`, `bindings` and `record`.

Owns: importing the script as a module named after its file (so handler names read
`task_group_watcher.completed`) without letting its name or its folder shadow any module, and
choosing its listener: the one `Listener` it defines, else
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

from tcpulse._listen.dispatch import script_module
from tcpulse.errors import TaskclusterFailure

EXPECTED = ("a handler script registers functions with `@tcpulse.on(QueueEvents.taskCompleted, ...)`, "
            "or defines `app = tcpulse.Listener('name')` and uses `@app.on(...)`")


class ScriptError(TaskclusterFailure, ValueError):
    """The script is missing, fails to import, or defines no (or several) listeners."""


def load_listener(path: str) -> Any:
    """Import the script at `path` and return the `Listener` whose handlers it registers."""
    from tcpulse._listen.listener import Listener, default_listener, reset_default_listener

    # A fresh default listener per load, so that loading several scripts in one process
    # (tests do) never mixes their module-level `tcpulse.on` handlers.
    reset_default_listener()
    module = _import(path)
    found = [value for value in vars(module).values() if isinstance(value, Listener)]
    unique: List[Any] = list({id(x): x for x in found}.values())
    if len(unique) > 1:
        names = ", ".join(k for k, v in vars(module).items() if isinstance(v, Listener))
        raise ScriptError(f"{path}: defines {len(unique)} listeners ({names}); keep one per script")
    listener = unique[0] if unique else default_listener()
    if not listener.handlers:
        raise ScriptError(f"{path}: registers no handlers; {EXPECTED}")
    return listener


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
