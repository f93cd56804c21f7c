from pathlib import Path

import pytest

from tests.helpers.trajectory import write_buffer


@pytest.fixture(scope="module")
def buffer_dir(tmp_path_factory) -> Path:
    """One tiny expert buffer that every trajectory method of a test module reads."""
    return write_buffer(tmp_path_factory.mktemp("trajectory_buffer"))
