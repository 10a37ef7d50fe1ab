"""Per-backend adapters, chosen once by `keras.config.backend()`.

Only this package imports jax, tensorflow (outside tf.data) or torch.
"""

import keras

_BACKEND = keras.config.backend()
if _BACKEND == "jax":
    from keras_tract.backend.common import conv, group_norm, lerp_variables, scope_of
    from keras_tract.backend.jax import TrainStep, compile_function, data_parallel, num_replicas
elif _BACKEND == "tensorflow":
    from keras_tract.backend.common import conv, group_norm, lerp_variables
    from keras_tract.backend.tensorflow import TrainStep, compile_function, data_parallel, num_replicas, scope_of
elif _BACKEND == "torch":
    from keras_tract.backend.common import scope_of
    from keras_tract.backend.torch import (
        TrainStep,
        compile_function,
        conv,
        data_parallel,
        group_norm,
        lerp_variables,
        num_replicas,
    )
else:
    raise ImportError(f"keras_tract supports the jax, tensorflow and torch backends, got {_BACKEND!r}.")

__all__ = ["TrainStep", "compile_function", "conv", "data_parallel", "group_norm", "lerp_variables", "num_replicas",
           "scope_of"]
