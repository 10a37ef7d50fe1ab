import os

if os.environ.get("KERAS_BACKEND") == "torch":
    import torch  # noqa: F401  (import before tensorflow: the other order can crash)

import keras
import pytest


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
