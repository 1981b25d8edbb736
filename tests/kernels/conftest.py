"""Fixtures for the kernel tests (small shapes; AKG compiles once per shape and caches)."""
import pytest

import ascend_kernels


@pytest.fixture(autouse=True)
def _reset_backend():
    ascend_kernels.set_backend(None)
    yield
    ascend_kernels.set_backend(None)
