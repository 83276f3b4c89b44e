"""Package exports imported on first use, as ``websockets`` does.

A package's ``__init__`` names what it exports and where each name lives; importing the
package then loads none of those modules, so that importing one light submodule (the client,
the transport's compatibility check) never loads the heavy ones beside it.
"""

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose globals are ``namespace``.

    ``exports`` maps each exported name to the module that defines it; a name is imported the
    first time it is asked for, then kept in ``namespace``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
