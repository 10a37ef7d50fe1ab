import json

import keras
import numpy as np
import pytest
from helpers.common import circle_mixture, to_numpy

import keras_tract
from keras_tract import EDMPrecond, GaussianMixtureDenoiser, VPDenoiser, ddim_step
from keras_tract.networks import MLPNetwork


def quadrature_posterior_mean(x, sigma, means, stds, weights):
    """E[x0 | x] for a 1-D mixture by brute-force integration over x0 (float64)."""
    grid = np.linspace(-4.0, 4.0, 400_001)
    prior = sum(w * np.exp(-0.5 * ((grid - m) / s) ** 2) / s for m, s, w in zip(means, stds, weights))
    out = []
    for xi in x:
        like = np.exp(-0.5 * ((xi - grid) / sigma) ** 2)
        out.append(np.sum(grid * prior * like) / np.sum(prior * like))
    return np.array(out)


def test_mixture_equals_quadrature_1d():
    means, stds, weights = [-0.6, 0.1, 0.7], [0.1, 0.3, 0.05], [0.2, 0.5, 0.3]
    denoiser = GaussianMixtureDenoiser(np.array(means)[:, None], stds, weights)
    x = np.array([-1.5, -0.4, 0.0, 0.35, 0.9, 2.0])
    for sigma in (0.03, 0.2, 1.0, 5.0):
        got = to_numpy(denoiser(x[:, None], np.full(len(x), sigma)))[:, 0]
        want = quadrature_posterior_mean(x, sigma, means, stds, np.array(weights) / np.sum(weights))
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_mixture_is_finite_at_extremes():
    denoiser = GaussianMixtureDenoiser(*circle_mixture())
    x = np.array([[1e3, -1e3], [-5e2, 0.0], [0.7, 0.0], [0.0, 0.0]])
    for sigma in (0.002, 80.0):
        out = to_numpy(denoiser(x, np.full(4, sigma)))
        assert np.all(np.isfinite(out))
    # sigma -> 0: the posterior mean tends to x near a mode; sigma -> inf: to the mixture mean.
    near = to_numpy(denoiser(x[2:3] + 0.01, np.full(1, 0.002)))
    np.testing.assert_allclose(near, x[2:3] + 0.01, atol=1e-4)
    far = to_numpy(denoiser(x[2:], np.full(2, 80.0)))
    np.testing.assert_allclose(far, np.zeros((2, 2)), atol=1e-3)


def test_edm_precond_identities():
    net = MLPNetwork(hidden=16, depth=1)
    denoiser = EDMPrecond(net, sigma_data=0.5)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3)).astype("float32")
    sigma = np.array([0.002, 0.1, 0.5, 3.0, 80.0], dtype="float32")
    s = sigma.astype(np.float64)[:, None]
    c_skip = 0.25 / (s**2 + 0.25)
    c_out = s * 0.5 / np.sqrt(s**2 + 0.25)
    c_in = 1 / np.sqrt(s**2 + 0.25)
    f = to_numpy(net([(c_in * x).astype("float32"), (np.log(sigma) / 4).astype("float32")]))
    np.testing.assert_allclose(to_numpy(denoiser(x, sigma)), c_skip * x + c_out * f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(denoiser.network_output(x, sigma)), f, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prediction", ["x", "both"])
def test_vp_ddim_step_equals_ve_ddim_step(prediction):
    """tc_distill.py's VP DDIM step (`post_xt_x0`) in float64 NumPy against the VE step through VPDenoiser."""
    dim = 4
    inputs = [keras.Input((dim,)), keras.Input(())]
    out_dim = dim if prediction == "x" else 2 * dim
    h = keras.layers.Concatenate()([inputs[0], keras.layers.Reshape((1,))(inputs[1])])
    net = keras.Model(inputs, keras.layers.Dense(out_dim, activation="tanh")(h))
    denoiser = VPDenoiser(net, prediction=prediction)
    schedule = keras_tract.CosineSchedule(1024)
    t_idx, s_idx = np.array([700, 300, 40]), np.array([500, 100, 8])
    lam_t, lam_s = schedule.logsnr[t_idx][:, None], schedule.logsnr[s_idx][:, None]
    g_t, g_s = 1 / (1 + np.exp(-lam_t)), 1 / (1 + np.exp(-lam_s))
    rng = np.random.default_rng(2)
    z_t = rng.standard_normal((3, dim))
    out = to_numpy(net([z_t.astype("float32"), lam_t[:, 0].astype("float32")]))
    if prediction == "both":
        x_from_eps = (z_t - np.sqrt(1 - g_t) * out[:, dim:]) / np.sqrt(g_t)
        x_hat = (1 - g_t) * out[:, :dim] + g_t * x_from_eps
    else:
        x_hat = out
    x_hat = np.clip(x_hat, -1, 1)
    eps = (z_t - np.sqrt(g_t) * x_hat) / np.sqrt(1 - g_t)
    z_s = np.sqrt(g_s) * x_hat + np.sqrt(1 - g_s) * eps
    sig_t, sig_s = schedule.sigmas[t_idx], schedule.sigmas[s_idx]
    x_ve = z_t / np.sqrt(g_t)
    got = ddim_step(denoiser, x_ve.astype("float32"), sig_t.astype("float32"),
                    sig_s.astype("float32"), clip_denoised=True)
    np.testing.assert_allclose(to_numpy(got) * np.sqrt(g_s), z_s, rtol=1e-4, atol=1e-5)


def make_denoisers():
    vp_net = MLPNetwork(hidden=8, depth=1, num_classes=3)
    return [
        (EDMPrecond(MLPNetwork(hidden=16, depth=2), sigma_data=0.7), None),
        (VPDenoiser(vp_net), np.eye(3)[[0, 2, 1, 1]].astype("float32")),
        (GaussianMixtureDenoiser(*circle_mixture()), None),
    ]


def test_keras_round_trip(tmp_path):
    x = np.random.default_rng(3).standard_normal((4, 2)).astype("float32")
    sigma = np.array([0.01, 0.3, 2.0, 50.0], dtype="float32")
    for i, (denoiser, labels) in enumerate(make_denoisers()):
        args = (x, sigma) if labels is None else (x, sigma, labels)
        before = to_numpy(denoiser(*args))
        path = str(tmp_path / f"d{i}.keras")
        denoiser.save(path)
        loaded = keras.saving.load_model(path)
        assert type(loaded) is type(denoiser)
        assert json.dumps(loaded.get_config()) == json.dumps(denoiser.get_config())
        np.testing.assert_array_equal(to_numpy(loaded(*args)), before)


def test_bad_input():
    denoiser = EDMPrecond(MLPNetwork(hidden=8, depth=1))
    with pytest.raises(ValueError, match=r"x.shape=\(4,\)"):
        denoiser(np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match=r"sigma.shape=\(4, 1\)"):
        denoiser(np.zeros((4, 2)), np.ones((4, 1)))
    with pytest.raises(ValueError, match="sigma_data=0"):
        EDMPrecond(MLPNetwork(), sigma_data=0)
    with pytest.raises(ValueError, match="prediction='v'"):
        VPDenoiser(MLPNetwork(), prediction="v")
    means = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"stds.shape=\(2,\)"):
        GaussianMixtureDenoiser(means, np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"weights.shape=\(4,\)"):
        GaussianMixtureDenoiser(means, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"means.shape=\(3,\)"):
        GaussianMixtureDenoiser(np.zeros(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="stds"):
        GaussianMixtureDenoiser(means, np.array([1.0, 0.0, 1.0]), np.ones(3))
    with pytest.raises(ValueError, match="2 elements"):
        GaussianMixtureDenoiser(means, np.ones(3), np.ones(3))(np.zeros((2, 3)), np.ones(2))


def test_labels_must_match_the_network(tmp_path):
    """Labels given to an unconditional network, or missing for a conditional one, fail clearly,
    also after saving and loading, and in fit()."""
    x, sigma = np.zeros((2, 2), "float32"), np.ones((2,), "float32")
    onehot = np.eye(10, dtype="float32")[[1, 2]]
    unconditional = keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=8, depth=1))
    unconditional(x, sigma)
    conditional = keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=8, depth=1, num_classes=10))
    conditional(x, sigma, onehot)
    path = str(tmp_path / "unconditional.keras")
    unconditional.save(path)
    for model in (unconditional, keras.saving.load_model(path)):
        with pytest.raises(ValueError, match=r"is unconditional: it takes no labels, got labels of shape \(2, 10\)"):
            model(x, sigma, onehot)
    with pytest.raises(ValueError, match=r"is class-conditional \(10 classes\): pass one-hot labels"):
        conditional(x, sigma)
    with pytest.raises(ValueError, match=r"takes one-hot labels of shape \(B, 10\), got \(2, 3\)"):
        conditional(x, sigma, onehot[:, :3])
    distiller = keras_tract.TRACTDistiller(unconditional, keras_tract.ema.clone(unconditional, "student"),
                                           keras_tract.KarrasSchedule(40), steps_per_phase=10)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"The teacher cannot denoise the data .*is unconditional"):
        distiller.fit(x, onehot, batch_size=2, verbose=0)
