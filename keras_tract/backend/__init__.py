"""Per-backend adapters, chosen once by `keras.config.backend()`.

Only this package imports jax, tensorflow (outside tf.data) or torch.
"""

import keras

_BACKEND = keras.config.backend()
if _BACKEND == "jax":
    from keras_tract.backend.common import average_pool2, constant, group_norm, lerp_variables, scope_of
    from keras_tract.backend.jax import (
        TrainStep,
        barrier,
        compile_function,
        conv,
        data_parallel,
        global_batch_size,
        num_replicas,
        process_count,
        process_index,
        reached_preemption_sync_point,
    )
elif _BACKEND == "tensorflow":
    from keras_tract.backend.common import (
        average_pool2,
        barrier,
        constant,
        conv,
        global_batch_size,
        group_norm,
        lerp_variables,
        process_count,
        process_index,
        reached_preemption_sync_point,
    )
    from keras_tract.backend.tensorflow import TrainStep, compile_function, data_parallel, num_replicas, scope_of
elif _BACKEND == "torch":
    from keras_tract.backend.common import (
        barrier,
        global_batch_size,
        process_count,
        process_index,
        reached_preemption_sync_point,
        scope_of,
    )
    from keras_tract.backend.torch import (
        TrainStep,
        average_pool2,
        compile_function,
        constant,
        conv,
        data_parallel,
        group_norm,
        lerp_variables,
        num_replicas,
    )
else:
    raise ImportError(f"keras_tract supports the jax, tensorflow and torch backends, got {_BACKEND!r}.")

__all__ = ["TrainStep", "average_pool2", "barrier", "compile_function", "constant", "conv", "data_parallel",
           "global_batch_size", "group_norm", "lerp_variables", "num_replicas", "process_count", "process_index",
           "reached_preemption_sync_point", "scope_of"]
