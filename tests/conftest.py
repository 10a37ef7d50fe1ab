import os
import shutil
import tempfile

if os.environ.get("KERAS_BACKEND") == "torch":
    import torch  # noqa: F401  (import before tensorflow: the other order can crash)

# One XLA compilation cache for a JAX session and the processes it starts (set before JAX is imported):
# the tests compile many identical small programs, and reusing them saves about a quarter of the time.
_XLA_CACHE = None
if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="keras_tract_xla_cache_")
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_XLA_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_unconfigure(config):
    if _XLA_CACHE:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.config.backend()}"


@pytest.fixture(autouse=True)
def _full_precision_and_seed():
    """Exact float32 matmuls (no TF32) and a fixed Keras seed for every test."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "float32")
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    keras.utils.set_random_seed(0)
    yield
