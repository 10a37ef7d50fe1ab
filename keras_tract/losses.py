"""Per-element squared errors of a denoiser's prediction, in the weightings the methods use."""

from keras import ops

from keras_tract.denoisers import EDMPrecond, as_float32, edm_scalings, expand_to


def _predict(denoiser, x_t, sigma, labels):
    args = (x_t, sigma) if labels is None else (x_t, sigma, labels)
    return ops.cast(denoiser(*args, training=True), "float32")


def edm_errors(denoiser, x_t, sigma, target, labels=None, sigma_data=0.5):
    """`lambda(sigma) (D - target)^2` with EDM's `lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`,
    shape `(B, elements)`. For an `EDMPrecond` this is the squared error of the raw network output F
    against `(target - c_skip x_t) / c_out`, computed in that form (better conditioned at small sigma)."""
    x_t, sigma, target = as_float32(x_t, sigma, target)
    batch = ops.shape(x_t)[0]
    if isinstance(denoiser, EDMPrecond):
        c_skip, c_out = denoiser.scalings(sigma, x_t)
        pred = denoiser.network_output(x_t, sigma, labels, training=True)
        return ops.reshape(ops.square(pred - (target - c_skip * x_t) / c_out), (batch, -1))
    _, c_out, _, _ = edm_scalings(expand_to(sigma, x_t), sigma_data)
    err = ops.square((_predict(denoiser, x_t, sigma, labels) - target) / c_out)
    return ops.reshape(err, (batch, -1))


def snr_trunc_errors(denoiser, x_t, sigma, target, labels=None):
    """`max(SNR, 1) (D - target)^2` with `SNR = 1 / sigma^2` (VE), shape `(B, elements)`."""
    x_t, sigma, target = as_float32(x_t, sigma, target)
    weight = expand_to(ops.maximum(1.0 / ops.square(sigma), 1.0), x_t)
    err = weight * ops.square(_predict(denoiser, x_t, sigma, labels) - target)
    return ops.reshape(err, (ops.shape(x_t)[0], -1))
