"""What several test modules share: numerics helpers, the 2-D mixture, small students, the `once` marker."""

import os

import keras
import numpy as np
import pytest


def runs_on(backend, reason):
    """Skips a test unless the suite runs on `backend` (or KERAS_TRACT_RUN_ONCE=1 is set)."""
    return pytest.mark.skipif(keras.config.backend() != backend and os.environ.get("KERAS_TRACT_RUN_ONCE") != "1",
                              reason=f"{reason}; KERAS_TRACT_RUN_ONCE=1 runs it here")


# For tests that start their own processes (a CLI, every backend) or test backend-independent logic:
# one run is enough. They go with the PyTorch suite, which tests/run.sh runs beside the slower JAX suite.
once = runs_on("torch", "runs once, with the torch suite (tests/run.sh): it starts its own processes or tests no "
                        "backend-specific code")
# The same for a test whose processes pick their own backend, sent to the JAX suite to balance tests/run.sh's lanes.
once_beside_jax = runs_on("jax", "runs once, with the JAX suite (tests/run.sh): its processes pick their own backend")
# A long learning run, on JAX (the fastest here): the other backends' TRACT step equals JAX's
# (test_cross_backend_parity) and their random draws are tested on their own.
learns_on_jax = runs_on("jax", "learns on JAX alone: the other backends' step equals JAX's "
                               "(test_cross_backend_parity) and their draws are tested apart")


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def circle_mixture(num=8, radius=0.7, std=0.05):
    """Means, stds and weights of the 2-D mixture used across the tests."""
    angles = np.linspace(0.0, 2.0 * np.pi, num, endpoint=False)
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return means, np.full(num, std), np.ones(num)


def mlp_student(dim=2, hidden=32, depth=2, seed=None):
    """A built EDMPrecond(MLPNetwork) denoiser; with `seed`, weights drawn by NumPy (backend-independent)."""
    import keras_tract

    student = keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=hidden, depth=depth))
    student(np.zeros((1, dim), "float32"), np.ones((1,), "float32"))
    if seed is not None:
        rng = np.random.default_rng(seed)
        student.set_weights([0.3 * rng.standard_normal(w.shape).astype("float32")
                             for w in student.get_weights()])
    return student


def mixture_data(num, seed=0):
    """Samples of `circle_mixture()` as float32 `(num, 2)`."""
    means, stds, _ = circle_mixture()
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, len(means), num)
    return (means[comp] + stds[0] * rng.standard_normal((num, 2))).astype("float32")
