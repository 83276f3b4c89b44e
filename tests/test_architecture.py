"""The package's shape, as docs/architecture.md states it: no import cycle anywhere (the layers
themselves are `lint-imports`' contract in pyproject.toml, run by `make lint`), and one base for
every public exception."""

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import grimp
import pytest

import wsguard
from wsguard.errors import WSGuardError


def find_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One shortest cycle through each import that closes one, every cycle named once."""
    cycles: set[tuple[str, ...]] = set()
    for importer in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycle = (importer, *back)[:-1]
                start = cycle.index(min(cycle))
                cycles.add(cycle[start:] + cycle[:start])
    return sorted(cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg.a", "pkg.b", "pkg.c", "pkg.d"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    graph.add_import(importer="pkg.d", imported="pkg.a")
    assert find_cycles(graph) == [("pkg.a", "pkg.b", "pkg.c")]


def test_no_import_cycle_in_the_package() -> None:
    """Imports under ``TYPE_CHECKING`` count: a cycle hidden there is still a knot to untie."""
    graph = grimp.build_graph("wsguard", cache_dir=None)
    assert find_cycles(graph) == []


def _modules() -> Iterator[str]:
    yield "wsguard"
    for module in pkgutil.walk_packages(wsguard.__path__, "wsguard."):
        if not module.name.endswith("__main__"):
            yield module.name


def _public_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.startswith("wsguard")
                and not attribute.startswith("_")
                and not value.__name__.startswith("_")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_public_exception_derives_from_wsguard_error() -> None:
    exceptions = _public_exceptions()
    assert len(exceptions) > 20, exceptions
    strays = sorted(
        f"{error.__module__}.{error.__qualname__}"
        for error in exceptions
        if not issubclass(error, WSGuardError)
    )
    assert strays == []


@pytest.mark.parametrize("name", ["BackendUnavailable", "EventTooLarge", "Unauthorized"])
def test_the_common_errors_are_caught_by_the_base(name: str) -> None:
    module = {
        "BackendUnavailable": "wsguard.backends",
        "EventTooLarge": "wsguard",
        "Unauthorized": "wsguard",
    }[name]
    assert issubclass(getattr(importlib.import_module(module), name), WSGuardError)
