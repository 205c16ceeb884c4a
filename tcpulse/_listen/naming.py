"""The module part of a handler's name.

Owns: naming a handler's module the same way however its script runs (`tcpulse listen app.py`
imports it as `app`; `python app.py` runs it as `__main__`). Apart from `tcpulse._listen.scripts`
(which loads scripts) so that `tcpulse._listen.dispatch` can name handlers without importing the
script loader, which imports the listener. Imports only the standard library.
"""
import sys
from pathlib import Path
from typing import Any


def module_name(func: Any) -> str:
    """The module part of a handler's name: its module's name, except for a script run as
    `python app.py` (module `__main__`), which is named as `tcpulse listen app.py` imports it
    (`script_module`), so that retries and dead letters recorded under one way of running it find
    their handlers under the other.

    Example:
        >>> module_name(print), module_name(module_name)
        ('builtins', 'tcpulse._listen.naming')
    """
    module = getattr(func, "__module__", None)
    if module == "__main__":
        file = getattr(sys.modules.get("__main__"), "__file__", None)
        if isinstance(file, str):
            return script_module(file)
    return str(module)


def script_module(path: str) -> str:
    """The module name a handler script at `path` runs as: its file's stem, or `handler_script`
    when the stem is no Python identifier.

    Example:
        >>> script_module("watchers/task_group.py"), script_module("my-watcher.py")
        ('task_group', 'handler_script')
    """
    stem = Path(path).stem
    return stem if stem.isidentifier() else "handler_script"
