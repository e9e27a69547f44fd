"""The lab image, built once per session and shared by every container test (a warm layer cache makes it
quick; a cold build takes several minutes)."""

from __future__ import annotations

import pytest

from tests.container.common import BuiltImage, build_image


@pytest.fixture(scope="session")
def image(pytestconfig: pytest.Config) -> BuiltImage:
    """The lab image, built from the locally made base (the base is cached between runs)."""
    return build_image(pytestconfig)
