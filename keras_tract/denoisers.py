"""Denoisers in VE form: `denoiser(x, sigma, labels=None)` estimates the clean sample.

`x = x0 + sigma * noise` has shape `(B, ...)`, `sigma` has shape `(B,)`; the
output has the shape of `x` and is float32 whatever the dtype policy.
"""

import keras
import numpy as np
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract import backend


def expand_to(sigma, x):
    """Reshapes per-sample `sigma` of shape `(B,)` to `(B, 1, ..., 1)` to broadcast over `x`."""
    return ops.reshape(sigma, (-1,) + (1,) * (len(x.shape) - 1))


def as_float32(*tensors):
    """Each argument (array or tensor) as a float32 tensor."""
    return [ops.cast(ops.convert_to_tensor(t), "float32") for t in tensors]


def image_shape(denoiser):
    """The per-example input shape `x.shape[1:]` a denoiser (or its built network) takes, or None."""
    shapes = (denoiser.get_build_config() or {}).get("shapes_dict", {})
    if "x_shape" in shapes:
        return tuple(shapes["x_shape"][1:])
    network = getattr(denoiser, "network", None)
    inputs = (network.get_build_config() or {}).get("input_shape") if network is not None and network.built else None
    return tuple(inputs[0][1:]) if inputs else None


def build_denoiser(denoiser, shape, labels=None):
    """Builds `denoiser` with one call on zeros of shape `(1,) + shape`; `labels` `(B, classes)`
    (one row is used) for a class-conditional one. A built denoiser is left as it is."""
    if denoiser.built:
        return denoiser
    if labels is None and getattr(denoiser, "num_classes", None):
        labels = np.eye(denoiser.num_classes, dtype="float32")[:1]
    args = (np.zeros((1,) + tuple(shape), "float32"), np.ones((1,), "float32"))
    denoiser(*args, *(() if labels is None else (np.asarray(labels, "float32")[:1],)))
    return denoiser


def check_inputs(x, sigma):
    """Raises ValueError unless `x` is `(B, ...)` with rank >= 2 and `sigma` is `(B,)`."""
    if len(x.shape) < 2:
        raise ValueError(f"`x` must have shape (B, ...) with rank >= 2, got x.shape={tuple(x.shape)}.")
    if len(sigma.shape) != 1:
        raise ValueError(f"`sigma` must have shape (B,), got sigma.shape={tuple(sigma.shape)}.")


def edm_scalings(sigma, sigma_data):
    """EDM's preconditioning `(c_skip, c_out, c_in, c_noise)` for float32 `sigma` of any shape."""
    total = ops.square(sigma) + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data * ops.rsqrt(total)
    c_in = ops.rsqrt(total)
    c_noise = ops.log(ops.maximum(sigma, backend.constant(1e-20, "float32"))) / 4.0
    return c_skip, c_out, c_in, c_noise


class Denoiser(keras.Model):
    """Base class of the VE denoisers: validates and casts inputs, serializes `network`.

    `sampling` (saved with the model) records how the denoiser was trained to sample: a dict
    with `schedule` (a serialized `Schedule`), `solver` and `steps` (DDIM clips its denoised
    estimates, as `sample_images` does). Trainers set it on the models they save;
    `tools/sample.py` and `tools/fid.py` sample that way by default and refuse flags that
    contradict it. `source` (also saved) records the checkpoint a converted teacher came from:
    its `file`, `format` and `sha256` (`keras_tract.convert`).
    """

    def __init__(self, network=None, sampling=None, source=None, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.sampling = None if sampling is None else dict(sampling)
        self.source = None if source is None else dict(source)

    def prepare(self, x, sigma):
        """Returns float32 `x`, float32 `sigma` `(B,)` and `sigma` shaped `(B, 1, ..., 1)`."""
        x = ops.cast(x, "float32")
        sigma = ops.cast(sigma, "float32")
        check_inputs(x, sigma)
        return x, sigma, expand_to(sigma, x)

    @property
    def num_classes(self):
        """The classes of a class-conditional network (0: unconditional), or None where the network
        does not say: the networks of `keras_tract.networks` declare theirs as `label_dim`, as EDM's do."""
        value = getattr(self.network, "label_dim", None)
        return None if value is None else int(value)

    def check_labels(self, labels):
        """Raises ValueError unless `labels` fit the network: None for an unconditional one,
        `(B, num_classes)` for a class-conditional one."""
        n = self.num_classes
        if n is None:
            return
        if labels is None and n:
            raise ValueError(f"{self.name} is class-conditional ({n} classes): pass one-hot labels of shape (B, {n}).")
        if labels is not None and not n:
            raise ValueError(f"{self.name} is unconditional: it takes no labels, got labels of shape "
                             f"{tuple(labels.shape)} (set data.labels=False, or train a conditional model).")
        if labels is not None and tuple(labels.shape)[-1] != n:
            raise ValueError(f"{self.name} takes one-hot labels of shape (B, {n}), got {tuple(labels.shape)}.")

    def run_network(self, inputs, labels, training):
        self.check_labels(labels)
        if labels is not None:
            inputs = inputs + [ops.cast(labels, "float32")]
        return ops.cast(self.network(inputs, training=training), "float32")

    def build(self, x_shape, sigma_shape=None, labels_shape=None):
        self.built = True

    def get_config(self):
        config = super().get_config()
        if self.sampling is not None:
            config["sampling"] = self.sampling
        if self.source is not None:
            config["source"] = self.source
        if self.network is not None:
            config["network"] = keras.saving.serialize_keras_object(self.network)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if "network" in config:
            config["network"] = keras.saving.deserialize_keras_object(
                config["network"], custom_objects=custom_objects
            )
        return cls(**config)


@register_keras_serializable(package="keras_tract")
class EDMPrecond(Denoiser):
    """EDM preconditioning (Karras et al. 2022, Table 1) around a raw network F.

    `D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), labels)`.

    Args:
        network: a Keras model called on `[c_in * x, c_noise]`, or
            `[c_in * x, c_noise, labels]` when labels are given; `c_noise` has
            shape `(B,)`. It returns F with the shape of `x`.
        sigma_data: float > 0, the data standard deviation.

    Call arguments:
        x: `(B, ...)` noisy samples. sigma: `(B,)` noise levels.
        labels: optional `(B, num_classes)` one-hot class labels.
        training: bool, passed to `network`.

    Example:
    >>> net = keras_tract.networks.MLPNetwork(hidden=64)
    >>> denoiser = keras_tract.EDMPrecond(net)
    >>> tuple(denoiser(np.zeros((4, 2)), np.full((4,), 1.0)).shape)
    (4, 2)
    """

    def __init__(self, network, sigma_data=0.5, **kwargs):
        super().__init__(network=network, **kwargs)
        if not sigma_data > 0:
            raise ValueError(f"`sigma_data` must be > 0, got sigma_data={sigma_data!r}.")
        self.sigma_data = float(sigma_data)

    def scalings(self, sigma, x):
        """`(c_skip, c_out)` at float32 `sigma` `(B,)`, shaped to broadcast over `x`."""
        c_skip, c_out, _, _ = edm_scalings(expand_to(ops.cast(sigma, "float32"), x), self.sigma_data)
        return c_skip, c_out

    def network_output(self, x, sigma, labels=None, training=False):
        """The raw network output F at `(x, sigma)`, float32, shape of `x`."""
        x, sigma, col = self.prepare(x, sigma)
        _, _, c_in, c_noise = edm_scalings(col, self.sigma_data)
        return self.run_network([c_in * x, ops.reshape(c_noise, (-1,))], labels, training)

    def call(self, x, sigma, labels=None, training=False):
        x = ops.cast(x, "float32")
        c_skip, c_out = self.scalings(sigma, x)
        return c_skip * x + c_out * self.network_output(x, sigma, labels, training)

    def get_config(self):
        return {**super().get_config(), "sigma_data": self.sigma_data}


@register_keras_serializable(package="keras_tract")
class VPDenoiser(Denoiser):
    """A cosine-logSNR (VP) network acting as a VE denoiser.

    With `gamma = 1 / (1 + sigma^2)` the network sees `z = sqrt(gamma) x` and
    `logsnr = -2 log sigma`. A DDIM step in VP form then equals the DDIM (Euler)
    step in VE form on `x = z / sqrt(gamma)` (Karras et al. 2022, section 2: VP and VE are one ODE up to scaling).

    Args:
        network: a Keras model called on `[z, logsnr]` or `[z, logsnr, labels]`.
            It returns the x-prediction (C channels, last axis) or, with
            `prediction="both"`, x and eps predictions concatenated (2C channels).
        prediction: `"x"` or `"both"`. With `"both"` the two heads are mixed as
            the progressive-distillation ImageNet teacher does:
            `x0 = (1 - gamma) x_head + gamma (x - sigma eps_head)`.

    Call arguments:
        x: `(B, ..., C)` noisy samples in VE form. sigma: `(B,)` noise levels.
        labels: optional `(B, num_classes)` one-hot labels. training: bool.
    """

    def __init__(self, network, prediction="x", **kwargs):
        super().__init__(network=network, **kwargs)
        if prediction not in ("x", "both"):
            raise ValueError(f'`prediction` must be "x" or "both", got prediction={prediction!r}.')
        self.prediction = prediction

    def call(self, x, sigma, labels=None, training=False):
        x, sigma, col = self.prepare(x, sigma)
        gamma = 1.0 / (1.0 + ops.square(col))
        logsnr = -2.0 * ops.log(ops.maximum(sigma, backend.constant(1e-20, "float32")))
        out = self.run_network([x * ops.sqrt(gamma), logsnr], labels, training)
        if self.prediction == "x":
            return out
        x_head, eps_head = ops.split(out, 2, axis=-1)
        return (1.0 - gamma) * x_head + gamma * (x - col * eps_head)

    def get_config(self):
        return {**super().get_config(), "prediction": self.prediction}


@register_keras_serializable(package="keras_tract")
class GaussianMixtureDenoiser(Denoiser):
    """The exact posterior mean `E[x0 | x0 + sigma n = x]` of an isotropic Gaussian mixture.

    Component k is `N(means[k], stds[k]^2 I)` with probability `weights[k]`.
    Given `x`, component k has likelihood `N(x; means[k], (stds[k]^2 + sigma^2) I)`
    and posterior mean `means[k] + stds[k]^2 / (stds[k]^2 + sigma^2) (x - means[k])`;
    the responsibilities are a softmax of log-likelihoods, so the result stays
    finite for any sigma > 0 and any finite `x`. Used as an exact teacher.

    Args:
        means: array `(K, D)`. stds: array `(K,)`, > 0. weights: array `(K,)`, > 0
            (normalized to sum 1).

    Call arguments:
        x: `(B, ...)` with `D` elements per sample. sigma: `(B,)`, > 0.

    Example:
    >>> angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    >>> means = 0.7 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    >>> teacher = GaussianMixtureDenoiser(means, np.full(8, 0.05), np.ones(8))
    """

    def __init__(self, means, stds, weights, **kwargs):
        super().__init__(**kwargs)
        means = np.asarray(means, dtype=np.float64)
        stds = np.asarray(stds, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        if means.ndim != 2:
            raise ValueError(f"`means` must have shape (K, D), got means.shape={means.shape}.")
        k = means.shape[0]
        for name, value in (("stds", stds), ("weights", weights)):
            if value.shape != (k,):
                raise ValueError(
                    f"`{name}` must have shape ({k},) to match means.shape={means.shape}, "
                    f"got {name}.shape={value.shape}."
                )
            if not np.all(value > 0):
                raise ValueError(f"`{name}` must be > 0, got {name}={value.tolist()}.")
        self.means, self.stds = means, stds
        self.weights_ = weights / weights.sum()

    def call(self, x, sigma, labels=None, training=False):
        if labels is not None:
            raise ValueError("GaussianMixtureDenoiser is unconditional; got `labels`.")
        x, sigma, _ = self.prepare(x, sigma)
        dim = self.means.shape[1]
        flat = ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))
        if flat.shape[1] != dim:
            raise ValueError(
                f"`x` must have {dim} elements per sample to match means, got x.shape={tuple(x.shape)}."
            )
        means = backend.constant(self.means, "float32")
        var0 = backend.constant(self.stds**2, "float32")[None, :]
        var = var0 + ops.square(sigma)[:, None]
        dist2 = ops.sum(ops.square(flat[:, None, :] - means[None]), axis=-1)
        log_weights = backend.constant(np.log(self.weights_), "float32")[None, :]
        logits = log_weights - 0.5 * dim * ops.log(var) - 0.5 * dist2 / var
        resp = ops.exp(logits - ops.logsumexp(logits, axis=-1, keepdims=True))
        shrink = var0 / var  # weight of x in each component's posterior mean
        out = (ops.sum(resp * shrink, axis=-1, keepdims=True) * flat
               + ops.matmul(resp * (1.0 - shrink), means))
        return ops.reshape(out, ops.shape(x))

    def get_config(self):
        return {**super().get_config(), "means": self.means.tolist(),
                "stds": self.stds.tolist(), "weights": self.weights_.tolist()}
