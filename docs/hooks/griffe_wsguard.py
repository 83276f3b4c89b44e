"""A griffe extension for the API reference (mkdocs.yml's mkdocstrings ``extensions``).

- wsguard's docstrings use Sphinx's roles (``:class:`~wsguard.settings.Settings```,
  ``:meth:`WSGuard.routes```), which Markdown does not know. Each becomes a cross-reference that
  links where the object is documented and stays inline code where it is not; a reST
  literal-block marker (``text::``) becomes a plain colon.
- The fields of :class:`wsguard.Settings` carry their help in their metadata
  (``setting(default, help)``), not in a docstring: each gets that help, with its flag and
  environment variable, as read from :mod:`wsguard.cli`, so the reference says what
  ``wsguard serve --help`` says; its value, and the class's signature, show the default itself
  rather than the ``setting(...)`` call.

The source is left as it is: it stays readable in an editor and in ``help()``.
"""

from __future__ import annotations

import enum
import re
from html import escape
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(?P<target>[^`]+)`")
LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _display(target: str) -> tuple[str, str]:
    """The path written in the role and the text shown: ``~a.b.C`` shows ``C``."""
    path = target.lstrip("!")
    if path.startswith("~"):
        path = path[1:]
        return path, path.rsplit(".", 1)[-1]
    return path, path


def _resolve(obj: griffe.Object, path: str) -> str | None:
    """The full path of ``path`` as seen from ``obj``'s scope, or None."""
    path = path.lstrip(".")
    first, _, rest = path.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            resolved = scope.resolve(first)
        except (griffe.NameResolutionError, griffe.AliasResolutionError, KeyError):
            scope = scope.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    if path.startswith("wsguard."):
        return path
    return None


def _rewrite(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        path, shown = _display(match["target"])
        code = f"<code>{escape(shown)}</code>"
        identifier = _resolve(obj, path)
        if identifier is None:
            return code
        return f'<autoref identifier="{escape(identifier)}" optional>{code}</autoref>'

    return LITERAL_MARKER.sub(":", ROLE.sub(replace, text))


def _document_settings(pkg: griffe.Module) -> None:
    """A docstring for each field of ``wsguard.settings.Settings``, from its ``setting()`` help."""
    import dataclasses

    from wsguard import cli, settings

    cls = pkg.modules["settings"].members["Settings"]
    options = {option.field: option for option in cli.SERVE_OPTIONS}
    for field in dataclasses.fields(settings.Settings):
        attr = cls.members.get(field.name)
        if not isinstance(attr, griffe.Attribute) or attr.docstring is not None:
            continue
        doc: settings.SettingDoc = field.metadata[settings.DOC]
        text = doc.help[:1].upper() + doc.help[1:] + "."
        option = options.get(field.name)
        if option is not None:
            text += f"\n\n`{option.flag}`, `{option.variable}`"
            if option.shown_default:
                text += f"; default: {option.shown_default}"
            text += "."
        else:
            text += "\n\nNo flag or variable: only an embedding sets it."
        attr.docstring = griffe.Docstring(text, parent=attr)
        attr.value = _shown(field.default)  # not the setting(...) call: the default itself


def _shown(value: object) -> str:
    """A default as Python source: ``LimitPolicy.EVICT_OLDEST``, ``'127.0.0.1'``, ``20.0``."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


class WsguardDocstrings(griffe.Extension):
    """Rewrites the docstrings of every object of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name == "wsguard":
            _document_settings(pkg)
        seen: set[str] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.path in seen:
                continue
            seen.add(obj.path)
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            stack.extend(member for member in obj.members.values() if isinstance(member, griffe.Object))
