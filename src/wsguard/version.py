"""The installed distribution's version, read once from its metadata (``pyproject.toml``'s)."""

from importlib.metadata import PackageNotFoundError, version


def _distribution_version() -> str:
    try:
        return version("wsguard")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _distribution_version()
