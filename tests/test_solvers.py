import numpy as np
import pytest
from helpers.common import to_numpy

from keras_tract import EDMPrecond, GaussianMixtureDenoiser, KarrasSchedule, heun_step, sample
from keras_tract.networks import MLPNetwork

MU, S = np.array([0.3, -0.2, 0.1]), 0.5


def gaussian_errors(solver, sizes):
    """Max error of `sample` against the closed-form ODE solution for N(MU, S^2 I)."""
    denoiser = GaussianMixtureDenoiser(MU[None], [S], [1.0])
    noise = np.random.default_rng(0).standard_normal((32, 3)).astype("float32")
    x_top = 80.0 * noise.astype(np.float64)
    exact = MU + (x_top - MU) * S / np.sqrt(S**2 + 80.0**2)
    return [np.abs(to_numpy(sample(denoiser, KarrasSchedule(n), noise, solver=solver)) - exact).max()
            for n in sizes]


def test_heun_converges_at_second_order():
    errors = gaussian_errors("heun", [16, 32, 64])
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(ratios > 3.5) and np.all(ratios < 6.0), (errors, ratios)
    assert errors[-1] < 1e-2


def test_ddim_converges_at_first_order():
    errors = gaussian_errors("ddim", [16, 32, 64])
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(ratios > 1.8) and np.all(ratios < 2.2), (errors, ratios)


def test_heun_step_matches_closed_form_of_its_stages():
    """One Heun step written out in float64 for the Gaussian denoiser."""
    denoiser = GaussianMixtureDenoiser(MU[None], [S], [1.0])
    x = np.random.default_rng(1).standard_normal((4, 3)) * 2.0
    s0, s1 = 2.0, 0.7
    dfn = lambda y, s: MU + S**2 / (S**2 + s**2) * (y - MU)  # noqa: E731
    d0 = (x - dfn(x, s0)) / s0
    x_e = x + (s1 - s0) * d0
    d1 = (x_e - dfn(x_e, s1)) / s1
    want = x + (s1 - s0) * (d0 + d1) / 2
    got = heun_step(denoiser, x.astype("float32"), np.full(4, s0), np.full(4, s1))
    np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5, atol=1e-5)
    # Per sample, a step to sigma = 0 is EDM's last (Euler) step: it lands on D(x; sigma).
    mixed = heun_step(denoiser, x.astype("float32"), np.full(4, s0), np.array([s1, 0.0, s1, 0.0]))
    np.testing.assert_allclose(to_numpy(mixed), np.where([[1], [0], [1], [0]], want, dfn(x, s0)), rtol=1e-5, atol=1e-5)


def test_compiled_sampler_matches_eager_and_sees_new_weights():
    denoiser = EDMPrecond(MLPNetwork(hidden=16, depth=1))
    schedule = KarrasSchedule(8)
    noise = np.random.default_rng(2).standard_normal((6, 2)).astype("float32")
    compiled = to_numpy(sample(denoiser, schedule, noise, steps=4))
    eager = to_numpy(sample(denoiser, schedule, noise, steps=4, jit_compile=False))
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-4)
    denoiser.set_weights([w * 0.5 for w in denoiser.get_weights()])
    updated = to_numpy(sample(denoiser, schedule, noise, steps=4))
    assert np.abs(updated - compiled).max() > 1e-3
    np.testing.assert_allclose(
        updated, to_numpy(sample(denoiser, schedule, noise, steps=4, jit_compile=False)),
        rtol=1e-4, atol=1e-4)


def test_one_step_ddim_is_the_denoiser_at_sigma_max():
    denoiser = GaussianMixtureDenoiser(MU[None], [S], [1.0])
    noise = np.random.default_rng(3).standard_normal((5, 3)).astype("float32")
    got = to_numpy(sample(denoiser, KarrasSchedule(40), noise, steps=1, solver="ddim"))
    want = MU + S**2 / (S**2 + 80.0**2) * (80.0 * noise - MU)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bad_input():
    denoiser = GaussianMixtureDenoiser(MU[None], [S], [1.0])
    noise = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match="solver='euler'"):
        sample(denoiser, KarrasSchedule(8), noise, solver="euler")
    with pytest.raises(ValueError, match="steps=3"):
        sample(denoiser, KarrasSchedule(8), noise, steps=3)
    with pytest.raises(ValueError, match=r"noise.shape=\(3,\)"):
        sample(denoiser, KarrasSchedule(8), np.zeros(3))


def test_noise_of_the_wrong_shape_fails_clearly():
    denoiser = EDMPrecond(MLPNetwork(hidden=8, depth=1))
    denoiser(np.zeros((1, 4, 4, 1), "float32"), np.ones((1,), "float32"))
    for shape in ((2, 4, 4, 3), (2, 16), (5,)):
        with pytest.raises(ValueError, match=r"`noise` must have shape \(B, 4, 4, 1\) for this denoiser, got"):
            sample(denoiser, KarrasSchedule(8), np.zeros(shape, "float32"), steps=1)
