"""Fixtures for the jaxlab.data tests."""

import random

import numpy as np
import pytest


@pytest.fixture
def restore_global_rngs():
    """Let a test reseed NumPy's legacy and Python's global RNGs; restore them afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    yield
    np.random.set_state(np_state)  # noqa: NPY002
    random.setstate(py_state)
