"""The transport refuses uvicorn versions it was not tested with."""

import pytest
import uvicorn

from wsguard.transport import check_uvicorn_version


@pytest.mark.parametrize("version", ["0.52.1", "0.52.4", "0.53.0", "0.54.0", "0.54.9"])
def test_tested_versions_are_accepted(version: str) -> None:
    check_uvicorn_version(version)


@pytest.mark.parametrize("version", ["0.35.0", "0.52.0", "0.55.0", "1.0.0"])
def test_untested_versions_are_refused(version: str) -> None:
    with pytest.raises(RuntimeError, match=version):
        check_uvicorn_version(version)


def test_the_installed_uvicorn_is_a_tested_one() -> None:
    check_uvicorn_version(uvicorn.__version__)
