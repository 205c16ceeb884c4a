"""The official client's module layout: a module per service of the active reference set.

Owns: the import hook behind `tcpulse.<service>` and `tcpulse.aio.<service>`, so that
`from taskcluster.queue import Queue` becomes `from tcpulse.queue import Queue`. A service's
module is its class name in lower case (`tcpulse.queue`, `tcpulse.queueevents`,
`tcpulse.workermanager`, `tcpulse.aio.purgecache`, ...) and holds that one class, the very
object `tcpulse.Queue` (or `tcpulse.aio.Queue`) is; an events module under `tcpulse.aio` holds
the sync events class, as exchanges do no I/O.

Why a hook: the modules follow the active set, so a set pulled from a deployment (`tcpulse
references pull`) that has more services has their modules too, and the legacy set its retired
ones. The finder sits last on `sys.meta_path`: a real module of the package (`tcpulse.auth`,
`tcpulse.client`, ...) always wins, and a service whose module name is taken by one is reached
through that module (`tcpulse.auth` holds `Auth` beside the public credential helpers). The
bundled set's services also have their module as a generated file (`tcpulse/queue.py`, made by
`service_module`, beside its stub `queue.pyi`): a type checker that finds a stub without a source
warns on every import of it. Importing a file module reads nothing, a hook module the set's
manifest only; either way the class is built, from the active set, when first used.

Example:
    >>> from tcpulse.queue import Queue
    >>> import tcpulse
    >>> Queue is tcpulse.Queue
    True
"""
import importlib.machinery
import sys
import threading
import types
from typing import Any, List, Optional, Sequence, Tuple

PACKAGES = ("tcpulse", "tcpulse.aio")


def service_names() -> List[str]:
    """The class names of the selected set (not fixing it): each has a module in both packages."""
    from tcpulse.references import selected_set

    return selected_set().names()


def class_of_module(package: str, leaf: str) -> Optional[str]:
    """The class `package.leaf` holds, or None when it is not a service module.

    Example:
        >>> class_of_module("tcpulse", "workermanagerevents")
        'WorkerManagerEvents'
    """
    if not leaf.isidentifier() or leaf.lower() != leaf:
        return None
    return {name.lower(): name for name in service_names()}.get(leaf)


def service_class(package: str, name: str) -> Any:
    """The class `name` as `package` exposes it: `tcpulse.aio`'s async client for an API, the
    one events class otherwise (the same objects the packages' attributes are)."""
    from tcpulse._api.services import generated_class
    from tcpulse.references import active_set

    reference = active_set().get(name)  # the class is built now: the set is fixed
    asynchronous = package == "tcpulse.aio" and reference is not None and reference.kind == "api"
    return generated_class(package if asynchronous else "tcpulse", name, asynchronous=asynchronous)


def module_getattr(package: str, names: Sequence[str], module: str) -> Any:
    """A module `__getattr__` that builds the service classes `names` on first use."""
    def __getattr__(attribute: str) -> Any:
        if attribute not in names:
            raise AttributeError(f"module {module!r} has no attribute {attribute!r} (it holds {', '.join(names)})")
        return service_class(package, attribute)

    return __getattr__


def service_module(module: str, name: str) -> Tuple[List[str], Any]:
    """`__all__` and `__getattr__` of the service module `module` holding class `name`, as the
    files generated beside the bundled set's stubs (`tcpulse/queue.py`) declare them."""
    package = module.rpartition(".")[0]
    return [name], module_getattr(package, [name], module)


class ServiceModules:
    """Finds and makes the service modules (a meta path finder and its loader; importlib.abc
    is left out, as importing it would double the cost of `import tcpulse`)."""

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        package, _, leaf = fullname.rpartition(".")
        # Opening the set imports (`tcpulse.apis`, which a source checkout lacks): those
        # lookups must not come back here.
        if package not in PACKAGES or getattr(self._busy, "finding", False):
            return None
        self._busy.finding = True
        try:
            found = class_of_module(package, leaf)
        finally:
            self._busy.finding = False
        return importlib.machinery.ModuleSpec(fullname, self) if found else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return None  # the default module

    def exec_module(self, module: types.ModuleType) -> None:
        package, _, leaf = module.__name__.rpartition(".")
        name = class_of_module(package, leaf)
        assert name is not None  # find_spec answered only for service modules
        module.__doc__ = (f"The {name} class of the active reference set, as `{package}.{name}`: "
                          f"`from {module.__name__} import {name}`.")
        module.__all__ = [name]  # type: ignore[attr-defined]
        module.__getattr__ = module_getattr(package, [name], module.__name__)  # type: ignore[attr-defined]


def install() -> None:
    """Put the finder last on `sys.meta_path` (once), after every finder of real modules."""
    if not any(isinstance(finder, ServiceModules) for finder in sys.meta_path):
        sys.meta_path.append(ServiceModules())
