import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers.common import once, to_numpy

import keras_tract
from keras_tract import networks
from keras_tract.networks import layers

BACKEND = keras.config.backend()
SMALL = ["ncsnpp_small", "ddpmpp_small", "adm_small"]


def small_inputs(label_dim=0, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal((batch, 8, 8, 3)).astype("float32"), rng.standard_normal(batch).astype("float32")]
    if label_dim:
        inputs.append(np.eye(label_dim, dtype="float32")[rng.integers(0, label_dim, batch)])
    return inputs


@once  # counting is the same on every backend
@pytest.mark.parametrize("name, count", [
    ("ncsnpp_cifar10", 56.40e6), ("ddpmpp_cifar10", 55.73e6), ("adm_imagenet64", 295.90e6)])
def test_edm_parameter_counts(name, count, monkeypatch):
    monkeypatch.setattr(layers, "weight_initializer", lambda *args: "zeros")  # counting needs no random init
    monkeypatch.setattr(layers, "bias_initializer", lambda *args: "zeros")
    net = networks.get(name)  # built for the preset's dataset at once, as keras-hub backbones
    assert abs(net.count_params() - count) / count < 1e-3, net.count_params()
    assert keras_tract.denoisers.image_shape(keras_tract.EDMPrecond(net)) == networks.IMAGE_SHAPES[name]


@once
@pytest.mark.parametrize("name, count", [("pd_cifar10", 60.0e6), ("pd_imagenet64", 295.9e6)])
def test_progressive_distillation_parameter_counts(name, count, monkeypatch):
    monkeypatch.setattr(layers, "weight_initializer", lambda *args: "zeros")
    net = networks.get(name)
    assert abs(net.count_params() - count) / count < 1e-3, net.count_params()


@pytest.mark.parametrize("name", SMALL)
def test_small_networks_train_and_round_trip(name, tmp_path):
    label_dim = 5 if name == "adm_small" else 0
    denoiser = keras_tract.EDMPrecond(networks.get(name, label_dim=label_dim))
    x, sigma, *labels = small_inputs(label_dim)
    sigma = np.abs(sigma) + 0.1
    out = to_numpy(denoiser(x, sigma, *labels))
    assert out.shape == x.shape and np.all(np.isfinite(out))
    trainer = keras_tract.EDMTrainer(denoiser)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)  # one step: skip compiling
    before = [np.array(w) for w in denoiser.get_weights()]
    data = np.clip(x, -1, 1) if not labels else (np.clip(x, -1, 1), labels[0])
    trainer.fit(data if not labels else data[0], data[1] if labels else None, batch_size=2, epochs=1, verbose=0)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, denoiser.get_weights()))
    path = str(tmp_path / "net.keras")
    denoiser.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(loaded(x, sigma, *labels)), to_numpy(denoiser(x, sigma, *labels)),
                               rtol=1e-6, atol=1e-6)


def test_weight_init_draws_edms_distributions_from_a_seed():
    """`WeightInit`: EDM's distributions for the layer's fans (a conv kernel `(kh, kw, in, out)` has fan_in
    `in * kh * kw`), bounds and standard deviations against the closed forms; a bias takes its layer's fans;
    a seed (or `keras.utils.set_random_seed`) fixes the draw, through the config too."""
    shape, fan_in, fan_out = (3, 3, 64, 32), 576, 288
    for mode, limit, std in (("xavier_uniform", np.sqrt(6 / (fan_in + fan_out)), None),
                             ("kaiming_uniform", np.sqrt(3 / fan_in), None),
                             ("kaiming_normal", None, np.sqrt(1 / fan_in)), ("normal", None, 1.0)):
        w = to_numpy(layers.WeightInit(mode, scale=0.5, seed=3)(shape, "float32"))
        assert w.shape == shape
        if limit is not None:
            assert 0.99 * 0.5 * limit < np.abs(w).max() <= 0.5 * limit
            std = limit / np.sqrt(3)
        np.testing.assert_allclose(w.std(), 0.5 * std, rtol=0.02, err_msg=mode)
        assert abs(w.mean()) < 4 * 0.5 * std / np.sqrt(w.size)
    bias = to_numpy(layers.WeightInit("kaiming_uniform", fans=(fan_in, fan_out), seed=1)((4096,)))
    assert 0.99 * np.sqrt(3 / fan_in) < np.abs(bias).max() <= np.sqrt(3 / fan_in)
    init = layers.WeightInit("xavier_uniform", seed=7)
    np.testing.assert_array_equal(to_numpy(type(init).from_config(init.get_config())(shape)), to_numpy(init(shape)))
    builds = []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        builds.append(layers.UNetBlock(8, attention=True, num_heads=2))
        builds[-1].build(((2, 8, 8, 4), (2, 16)))
    for a, b in zip(builds[0].get_weights(), builds[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.abs(builds[0].get_weights()[0]).max() > 0
    with pytest.raises(ValueError, match="got 'uniform'"):
        layers.WeightInit("uniform")


def test_resampling_filters():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    y = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    down = to_numpy(layers.downsample(keras.ops.convert_to_tensor(x), [1, 1], 0))
    np.testing.assert_allclose(down, x.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4)), rtol=1e-5, atol=1e-6)
    up = to_numpy(layers.upsample(keras.ops.convert_to_tensor(y), [1, 1], 0))
    np.testing.assert_allclose(up, y.repeat(2, axis=1).repeat(2, axis=2), rtol=1e-6)
    # A transposed convolution is the adjoint of the strided one: <down(x), y> = <x, up(y)> / 4.
    down = to_numpy(layers.downsample(keras.ops.convert_to_tensor(x), [1, 3, 3, 1], 1))
    up = to_numpy(layers.upsample(keras.ops.convert_to_tensor(y), [1, 3, 3, 1], 1))
    assert down.shape == (2, 4, 4, 3) and up.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(np.sum(down * y), np.sum(x * up) / 4, rtol=1e-5)


def test_attention_and_group_norm_match_numpy():
    block = layers.UNetBlock(8, attention=True, num_heads=2, init_zero={"init_mode": "xavier_uniform"})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 4, 8)).astype("float32")
    block.build(((2, 4, 4, 8), (2, 16)))
    qkv = rng.standard_normal((2, 4, 4, 24)).astype("float32")
    got = to_numpy(block.attend(keras.ops.convert_to_tensor(qkv)))
    # EDM: reshape (N, C, H, W) -> (N * heads, C / heads, 3, H * W): channel c = (head, c', qkv).
    q = qkv.reshape(2, 16, 2, 4, 3).astype(np.float64)
    logits = np.einsum("bqhc,bkhc->bhqk", q[..., 0], q[..., 1]) / 2.0
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    want = np.einsum("bhqk,bkhc->bqhc", w, q[..., 2]).reshape(2, 4, 4, 8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    norm = layers.GroupNorm(eps=1e-6)
    got = to_numpy(norm(x))
    g = x.reshape(2, 4, 4, 2, 4).astype(np.float64)
    g = (g - g.mean((1, 2, 4), keepdims=True)) / np.sqrt(g.var((1, 2, 4), keepdims=True) + 1e-6)
    np.testing.assert_allclose(got, g.reshape(x.shape), rtol=1e-4, atol=1e-5)


def test_mixed_bfloat16_tracks_float32():
    x, sigma = small_inputs()
    sigma = np.abs(sigma) + 0.5
    reference = keras_tract.EDMPrecond(networks.get("ddpmpp_small"))
    want = to_numpy(reference(x, sigma))
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = keras_tract.EDMPrecond(networks.get("ddpmpp_small"))
        mixed(x, sigma)
        mixed.set_weights(reference.get_weights())
        got = mixed(x, sigma)
    finally:
        keras.config.set_dtype_policy("float32")
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    assert np.abs(to_numpy(got) - want).max() < 0.05 * np.abs(want).max()


@once
def test_saved_on_one_backend_loads_on_the_others(tmp_path):
    x, sigma = small_inputs()
    sigma = np.abs(sigma) + 0.1
    denoiser = keras_tract.EDMPrecond(networks.get("ncsnpp_small"))
    want = to_numpy(denoiser(x, sigma))
    path = str(tmp_path / "net.keras")
    denoiser.save(path)
    np.savez(str(tmp_path / "in.npz"), x=x, sigma=sigma)
    script = ("import sys, numpy as np, keras, keras_tract; d = keras.saving.load_model(sys.argv[1]); "
              "i = np.load(sys.argv[2]); np.save(sys.argv[3], keras.ops.convert_to_numpy(d(i['x'], i['sigma'])))")
    for backend in ("tensorflow", "jax"):
        out = str(tmp_path / f"{backend}.npy")
        subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "in.npz"), out], check=True,
                       env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True)
        np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-5, err_msg=backend)


def test_skip_encoder_and_decoder_variants_run():
    x, sigma = small_inputs()
    net = networks.get("ddpmpp_small", encoder_type="skip", decoder_type="skip", out_channels=2)
    assert to_numpy(net([x, sigma])).shape == (2, 8, 8, 2)


def test_bad_preset_and_arguments():
    with pytest.raises(ValueError, match="name='unet'"):
        networks.get("unet")
    with pytest.raises(ValueError, match="encoder_type='deep'"):
        networks.get("ddpmpp_small", encoder_type="deep")
    with pytest.raises(ValueError, match="dropout=1.5"):
        networks.get("adm_small", dropout=1.5)


def _conv_gradients_float64(x, w, r, pad):
    """d/dx, d/dw of sum(conv(x, w) * r) for a stride-1 cross-correlation with symmetric zero padding `pad`."""
    kh, kw = w.shape[:2]
    xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    h, wd = r.shape[1:3]
    for i in range(kh):
        for j in range(kw):
            dw[i, j] = np.einsum("bhwc,bhwo->co", xp[:, i:i + h, j:j + wd], r)
            dxp[:, i:i + h, j:j + wd] += np.einsum("bhwo,co->bhwc", r, w[i, j])
    return dxp[:, pad:xp.shape[1] - pad, pad:xp.shape[2] - pad], dw


@pytest.mark.skipif(BACKEND != "jax", reason="the JAX convolution's own gradient (CPUs)")
@pytest.mark.parametrize("kernel,padding", [(3, "same"), (3, "valid"), (1, "valid")])
@pytest.mark.parametrize("height,width", [(7, 6), (16, 17)])  # the kernel gradient's two forms
def test_jax_convolution_gradient_matches_float64_inside_and_outside_a_scan(kernel, padding, height, width):
    import jax
    import jax.numpy as jnp

    from keras_tract import backend

    rng = np.random.default_rng(kernel)
    x, w = rng.standard_normal((3, height, width, 5)), rng.standard_normal((kernel, kernel, 5, 4))
    pad = kernel // 2 if padding == "same" else 0
    r = rng.standard_normal((3, height + 2 * pad - kernel + 1, width + 2 * pad - kernel + 1, 4))
    dx, dw = _conv_gradients_float64(x, w, r, pad)
    x32, w32, r32 = (jnp.asarray(t, "float32") for t in (x, w, r))
    loss = lambda x, w, r: jnp.sum(backend.conv(x, w, None, padding) * r)  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(x32, w32, r32)

    def scanned(x, w, r):  # the micro-batch loop: the kernel gradient summed over two halves of the batch
        parts = (jnp.stack([x[:1], x[1:2]]), jnp.stack([r[:1], r[1:2]]))
        body = lambda total, xr: (total + jax.grad(loss, argnums=1)(xr[0], w, xr[1]), None)  # noqa: E731
        return jax.lax.scan(body, jnp.zeros_like(w), parts)[0]

    dw_two = _conv_gradients_float64(x[:2], w, r[:2], pad)[1]
    for got, want in ((grads[0], dx), (grads[1], dw), (jax.jit(scanned)(x32, w32, r32), dw_two)):
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=1e-4)
