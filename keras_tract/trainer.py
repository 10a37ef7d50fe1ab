"""The base of every model that `fit()` trains through the backend adapters.

A subclass defines four methods that `keras_tract.backend.TrainStep` calls:
`draw(shape)` (the step's random draws for a batch of `shape = (B, ...)`, a
tuple of `(B, ...)` tensors, plus once-per-step state updates), `prepare_step(x,
labels, draws)` (targets, no gradient), `step_loss(prepared, labels)` (the batch-mean
loss to differentiate w.r.t. the trainable variables) and `end_step(finite, loss)`
(state updates after the optimizer step; returns the logs).

With `micro_batches=k` the adapters split every batch into k equal parts after
`draw`, run `prepare_step` and `step_loss` on each in turn, and apply the mean
gradient once: one step on a batch of B equals one step with k micro-batches of
B / k, while the networks only ever see B / k samples (gradient accumulation).
This base keeps the step and skipped-step counters, the random state (saved
with the model) and the loss tracker.
"""

import types

import keras
import numpy as np
from keras import ops

from keras_tract import backend
from keras_tract.callbacks import StopOnDivergence

# Policies a trainer's student may compute under: mixed_float16 would need loss scaling.
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


def first_batch(data, batch_size=None):
    """`(x, labels)` of the first batch of a tf.data dataset, or of arrays batched by `batch_size`
    (Keras' default 32), as NumPy; None for other inputs."""
    size = None
    if hasattr(data, "element_spec") and hasattr(data, "take"):
        data = next(iter(data.take(1)))
    elif isinstance(data, (np.ndarray, tuple, list)):
        size = batch_size or 32
    if not isinstance(data, (np.ndarray, tuple, list)) and not hasattr(data, "numpy"):
        return None
    x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
    return np.asarray(x)[:size], None if labels is None else np.asarray(labels)[:size]


def check_images(x):
    """Raises ValueError unless `x` is finite floating point within [-1, 1]."""
    hint = "convert uint8 images with x / 127.5 - 1"
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"Training data must be floats in [-1, 1], got dtype {x.dtype}; {hint}.")
    if not np.isfinite(x).all():
        raise ValueError(f"Training data must be finite, got {int(np.size(x) - np.isfinite(x).sum())} NaN or "
                         "infinite values in the first batch.")
    if x.size and np.abs(x).max() > 1.0 + 1e-3:
        raise ValueError(
            f"Training data must lie in [-1, 1], got values in [{x.min():.4g}, {x.max():.4g}]; {hint}.")


def check_batch_size(batch, micro_batches, replicas=1):
    """Raises ValueError unless the global batch splits into `micro_batches` parts on each of `replicas`."""
    if batch % (micro_batches * replicas):
        raise ValueError(f"The batch size {batch} must be a multiple of micro_batches={micro_batches}"
                         + (f" times the {replicas} data-parallel replicas." if replicas > 1 else "."))


class Trainer(backend.TrainStep, keras.Model):
    """Counters, random state and loss tracking shared by the distillers and `EDMTrainer`.

    `fit()` checks the first batch (`check_batch`; a subclass builds unbuilt models there) and adds
    `callbacks.StopOnDivergence()` unless one is given: a run whose steps keep being skipped for a
    non-finite loss or gradient stops with a `FloatingPointError` instead of running on.
    """

    def __init__(self, seed=0, micro_batches=1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(micro_batches, (int, np.integer)) or isinstance(micro_batches, bool) or micro_batches < 1:
            raise ValueError(f"`micro_batches` must be a positive integer, got micro_batches={micro_batches!r}.")
        self.seed, self.micro_batches = seed, int(micro_batches)
        self.step_count = self.add_counter("step_count")
        self.skipped_steps = self.add_counter("skipped_steps")
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        # A saved copy of the generator's state (SeedGenerator state is not written to .keras files).
        state = self.seed_generator.state
        self.rng_state = self.add_weight(shape=state.shape, dtype=state.dtype, trainable=False,
                                         initializer=lambda shape, dtype: ops.copy(state.value),
                                         name="rng_state")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # A namespace, not a dict: Keras would make the variables listed in a dict the trainer's own (saved twice).
        self._per_fit = types.SimpleNamespace(values={})

    def per_fit(self, key, make):
        """`make()`, kept from its first call until the next `fit()` (Keras' `make_train_function`).

        For the lists of variables a step walks: listing a model's weights costs milliseconds of Python,
        which PyTorch's eager step would pay at every step (JAX and TensorFlow trace the step once).
        Never for values computed inside a traced step.
        """
        values = self._per_fit.values
        if key not in values:
            values[key] = make()
        return values[key]

    def make_train_function(self, force=False):
        self._per_fit.values.clear()
        return super().make_train_function(force)

    def add_counter(self, name):
        """A saved int32 scalar variable, starting at 0."""
        return self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name=name)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def record_step(self, finite, loss):
        """Counts the step (and a skipped one), keeps the random state, tracks finite losses."""
        self.rng_state.assign(ops.copy(self.seed_generator.state.value))
        # Arithmetic on the variables' values, not the variables: Keras would convert each number to a tensor.
        self.skipped_steps.assign(self.skipped_steps.value + 1 - ops.cast(finite, "int32"))
        self.step_count.assign(self.step_count.value + 1)
        self.loss_tracker.update_state(ops.where(finite, loss, backend.constant(0.0, "float32")),
                                       sample_weight=ops.cast(finite, "float32"))
        # NaN, not 0, while every step so far was skipped.
        mean = ops.where(self.loss_tracker.count.value > 0, self.loss_tracker.result(),
                         backend.constant(float("nan"), "float32"))
        return {"loss": mean, "skipped": ops.copy(self.skipped_steps.value)}

    def check_batch(self, x, labels):
        """Checks the first training batch; subclasses add model-specific checks."""
        check_images(x)
        check_batch_size(backend.global_batch_size(len(x)), self.micro_batches, backend.num_replicas())

    def fit(self, x=None, y=None, *args, **kwargs):
        batch = first_batch(x if y is None else (x, y), kwargs.get("batch_size"))
        if batch is not None:
            self.check_batch(*batch)
        if hasattr(x, "element_spec"):
            kwargs.setdefault("shuffle", False)  # a tf.data pipeline shuffles itself
        if self.optimizer is not None and not self.optimizer.built:
            with backend.scope_of(self):
                self.optimizer.build(self.trainable_variables)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(c, StopOnDivergence) for c in callbacks):
            callbacks.append(StopOnDivergence())
        return super().fit(x, y, *args, callbacks=callbacks, **kwargs)

    def get_compile_config(self):
        """The compile config, portable across backends: the optimizer by its public Keras class and
        `jit_compile="auto"`, so a checkpoint resumes on any backend with that backend's defaults."""
        config = super().get_compile_config()
        optimizer = (config or {}).get("optimizer")
        if isinstance(optimizer, dict) and optimizer.get("module", "").startswith("keras.src.backend."):
            config["optimizer"] = {**optimizer, "module": "keras.optimizers", "registered_name": None}
        if config:
            config["jit_compile"] = "auto"
        return config

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.seed_generator.state.assign(ops.copy(self.rng_state.value))

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "micro_batches": self.micro_batches}
