"""Training EDM teachers: EDM's loss, EMA with a half-life in images, learning-rate ramp-up."""

import math

import keras
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract import backend
from keras_tract.denoisers import build_denoiser, expand_to, image_shape
from keras_tract.ema import clone
from keras_tract.losses import edm_errors
from keras_tract.trainer import Trainer


@register_keras_serializable(package="keras_tract")
class LinearRampUp(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate * min(step / rampup_steps, 1)` (EDM's ramp-up; the first step has rate 0).

    Args:
        learning_rate: float, the rate after the ramp-up.
        rampup_steps: int >= 0; 0 disables the ramp-up.
    """

    def __init__(self, learning_rate, rampup_steps):
        if not learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got learning_rate={learning_rate!r}.")
        if rampup_steps < 0:
            raise ValueError(f"`rampup_steps` must be >= 0, got rampup_steps={rampup_steps!r}.")
        self.learning_rate, self.rampup_steps = float(learning_rate), int(rampup_steps)

    def __call__(self, step):
        if not self.rampup_steps:
            return backend.constant(self.learning_rate, "float32")
        return self.learning_rate * ops.minimum(ops.cast(step, "float32") / self.rampup_steps,
                                                backend.constant(1.0, "float32"))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "rampup_steps": self.rampup_steps}


@register_keras_serializable(package="keras_tract")
class EDMTrainer(Trainer):
    """Trains a denoiser with EDM's loss (Karras et al. 2022, section 5).

    Each step draws `ln sigma ~ N(p_mean, p_std^2)` per sample and minimizes
    `lambda(sigma) ||D(x + sigma n; sigma) - x||^2`, summed over elements and
    averaged over the batch, with `lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`.
    After every optimizer step the EMA follows with `beta = 0.5^(batch / h)`,
    `h = min(ema_halflife_kimg * 1000, ema_rampup_ratio * images_seen)`.

    Args:
        denoiser: a trainable denoiser (usually `EDMPrecond`), built on the first
            batch of `fit()` if it is not; its EMA computes in float32 whatever the
            denoiser's dtype policy.
        p_mean, p_std: the log-normal noise-level distribution.
        ema_halflife_kimg: EMA half-life in thousands of images.
        ema_rampup_ratio: EMA half-life ramp-up ratio, or None.
        seed: int, seeds the noise draws.
        micro_batches: int, gradient accumulation as in `TRACTDistiller`.

    Example:
    >>> trainer = EDMTrainer(EDMPrecond(keras_tract.networks.get("mlp_small")))  # built on the first batch
    >>> trainer.compile(optimizer=keras.optimizers.Adam(LinearRampUp(1e-3, 100), epsilon=1e-8))
    >>> history = trainer.fit(keras_tract.data.digits(batch_size=128), steps_per_epoch=20, verbose=0)
    >>> trainer.ema.save("teacher.keras")
    """

    def __init__(self, denoiser, p_mean=-1.2, p_std=1.2, ema_halflife_kimg=500.0, ema_rampup_ratio=0.05,
                 seed=0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not p_std > 0:
            raise ValueError(f"`p_std` must be > 0, got p_std={p_std!r}.")
        if not ema_halflife_kimg > 0:
            raise ValueError(f"`ema_halflife_kimg` must be > 0, got ema_halflife_kimg={ema_halflife_kimg!r}.")
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.ema_halflife_kimg = float(ema_halflife_kimg)
        self.ema_rampup_ratio = None if ema_rampup_ratio is None else float(ema_rampup_ratio)
        self.denoiser, self.ema = denoiser, None
        shape = image_shape(denoiser)
        if shape is not None:
            self.build_denoiser(shape)
        self.images_seen = self.add_counter("images_seen")
        self.ema_beta = self.add_weight(shape=(), initializer="zeros", trainable=False, name="ema_beta")
        self.built = True

    def build_denoiser(self, shape, labels=None):
        """Builds the denoiser for per-example `shape` (as Keras models build on their first batch) and its EMA."""
        if self.ema is None:
            build_denoiser(self.denoiser, shape, labels)
            self.ema = clone(self.denoiser, "ema", dtype_policy="float32")

    def check_batch(self, x, labels):
        super().check_batch(x, labels)
        self.denoiser.check_labels(labels)
        self.build_denoiser(x.shape[1:], labels)

    def draw(self, shape):
        """Per-sample `sigma` `(B,)` and noise of `shape`; counts the B images and sets this step's EMA beta."""
        batch = shape[0]
        halflife = backend.constant(self.ema_halflife_kimg * 1000.0, "float32")
        if self.ema_rampup_ratio is not None:
            halflife = ops.minimum(halflife, ops.cast(self.images_seen, "float32") * self.ema_rampup_ratio)
        halflife = ops.maximum(halflife, backend.constant(1e-8, "float32"))
        self.ema_beta.assign(ops.exp(math.log(0.5) * ops.cast(batch, "float32") / halflife))
        self.images_seen.assign(self.images_seen.value + batch)
        sigma = ops.exp(self.p_mean + self.p_std * keras.random.normal((batch,), seed=self.seed_generator))
        noise = keras.random.normal(shape, seed=self.seed_generator)
        return sigma, noise

    def prepare_step(self, x, labels, draws):
        sigma, noise = draws
        x = ops.cast(x, "float32")
        return x + expand_to(sigma, x) * noise, sigma, x

    def step_loss(self, prepared, labels=None):
        return ops.mean(ops.sum(edm_errors(self.denoiser, *prepared, labels), axis=1))

    def end_step(self, finite, loss):
        weights = self.per_fit("ema", lambda: (self.ema.weights, self.denoiser.weights))
        rate = ops.where(finite, 1.0 - self.ema_beta.value, backend.constant(0.0, "float32"))
        backend.lerp_variables(*weights, rate)
        return self.record_step(finite, loss)

    def get_config(self):
        return {**super().get_config(), "denoiser": keras.saving.serialize_keras_object(self.denoiser),
                "p_mean": self.p_mean, "p_std": self.p_std, "ema_halflife_kimg": self.ema_halflife_kimg,
                "ema_rampup_ratio": self.ema_rampup_ratio}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["denoiser"] = keras.saving.deserialize_keras_object(config["denoiser"], custom_objects=custom_objects)
        return cls(**config)
