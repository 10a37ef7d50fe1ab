"""Targets and losses of the distillers against independent float64 NumPy computations."""

import keras
import numpy as np
import pytest
from helpers.common import circle_mixture, mlp_student, to_numpy

from keras_tract import (
    BinaryDistiller,
    CosineSchedule,
    GaussianMixtureDenoiser,
    KarrasSchedule,
    TRACTDistiller,
    VPDenoiser,
)
from keras_tract.networks import MLPNetwork


def mixture_mean(x, sigma, means, stds, weights):
    """Posterior mean of the mixture in float64, `sigma` `(B,)`."""
    var = stds[None] ** 2 + sigma[:, None] ** 2
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    logits = np.log(weights)[None] - 0.5 * means.shape[1] * np.log(var) - 0.5 * d2 / var
    r = np.exp(logits - logits.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    post = means[None] + (stds[None, :, None] ** 2 / var[..., None]) * (x[:, None] - means[None])
    return (r[..., None] * post).sum(1)


def call64(denoiser, x, sigma):
    return to_numpy(denoiser(x.astype("float32"), sigma.astype("float32")))


@pytest.mark.parametrize("time_schedule, group, offset", [
    ((40, 1), [1, 1, 1, 1, 1, 1], [0, 5, 20, 38, 39, 39]),
    ((40, 8, 1), [8, 8, 3, 1, 1, 2], [0, 4, 2, 3, 4, 1]),
])
def test_tract_ve_targets_match_float64_reference(time_schedule, group, offset):
    means, stds, weights = circle_mixture()
    weights = weights / weights.sum()
    teacher = GaussianMixtureDenoiser(means, stds, weights)
    schedule = KarrasSchedule(40)
    distiller = TRACTDistiller(teacher, mlp_student(seed=3), schedule, time_schedule, steps_per_phase=10)
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.9, 0.9, (6, 2))
    noise = rng.standard_normal((6, 2))
    g, k = np.array(group), np.array(offset)

    # tc_distill_edm.py's train_op, written as the official script does it (k1 clamp, terminal override).
    delta = 40 // time_schedule[1]
    k0, k2 = delta * g - k, delta * (g - 1)
    k1 = np.maximum(k0 - 1, 1)
    sig = schedule.sigmas
    s0, s1, s2 = sig[k0], sig[k1], sig[k2]
    x_t = x + s0[:, None] * noise
    d_0 = mixture_mean(x_t, s0, means, stds, weights)
    d0 = (x_t - d_0) / s0[:, None]
    x_e = x_t + (s1 - s0)[:, None] * d0
    d1 = (x_e - mixture_mean(x_e, s1, means, stds, weights)) / s1[:, None]
    x_1 = x_t + (s1 - s0)[:, None] * (d0 + d1) / 2
    x0_self = np.clip(call64(distiller.self_teacher, x_1, s1), -1, 1)
    x_2 = x0_self + (s2 / s1)[:, None] * (x_1 - x0_self)
    at_end = (k + 1 == delta)[:, None]
    x_2 = np.where(at_end, x_1, x_2)
    want = (x_2 * s0[:, None] - x_t * s2[:, None]) / (s0 - s2)[:, None]
    want = np.where((k0 - 1 == 0)[:, None], d_0, want)

    got_xt, got_sigma, got = distiller.distillation_targets(
        x.astype("float32"), noise.astype("float32"), g.astype("int32"), k.astype("int32"))
    np.testing.assert_allclose(to_numpy(got_sigma), s0, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(got_xt), x_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(got), want, rtol=1e-4, atol=2e-4)

    # Inversion: one student DDIM step with the target lands on the endpoint.
    got = to_numpy(got)
    landed = got + (s2 / s0)[:, None] * (x_t - got)
    endpoint = np.where((k0 == 1)[:, None], d_0, x_2)
    np.testing.assert_allclose(landed, endpoint, rtol=1e-4, atol=2e-4)

    # EDM loss: MSE of the raw network output F (tc_distill_edm.py, weight == 1).
    student = distiller.student
    c_skip = 0.25 / (s0**2 + 0.25)
    c_out = s0 * 0.5 / np.sqrt(s0**2 + 0.25)
    f_pred = to_numpy(student.network_output(x_t.astype("float32"), s0.astype("float32")))
    f_target = (got - c_skip[:, None] * x_t) / c_out[:, None]
    loss = distiller.student_loss(got_xt, got_sigma, keras.ops.convert_to_tensor(got.astype("float32")))
    np.testing.assert_allclose(float(to_numpy(loss)), np.mean((f_pred - f_target) ** 2), rtol=1e-4)


def test_tract_vp_targets_match_float64_reference():
    """tc_distill.py's train_op in the VP (z, gamma) form against the distiller's VE form."""
    dim = 3
    inputs = [keras.Input((dim,)), keras.Input(())]
    h = keras.layers.Concatenate()([inputs[0], keras.layers.Reshape((1,))(keras.layers.Rescaling(0.1)(inputs[1]))])
    teacher_net = keras.Model(inputs, keras.layers.Dense(dim, activation="tanh")(h))
    teacher = VPDenoiser(teacher_net)
    student = VPDenoiser(MLPNetwork(hidden=16, depth=1))
    student(np.zeros((1, dim), "float32"), np.ones((1,), "float32"))
    schedule = CosineSchedule(64)
    distiller = TRACTDistiller(teacher, student, schedule, (64, 8, 1), teacher_solver="ddim",
                               loss="snr_trunc", steps_per_phase=10)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (5, dim))
    eps = rng.standard_normal((5, dim))
    g, k = np.array([8, 8, 1, 1, 4]), np.array([0, 7, 0, 7, 3])
    i0, i2 = 8 * g - k, 8 * (g - 1)
    i1 = i0 - 1
    lam = schedule.logsnr
    gam = lambda i: (1 / (1 + np.exp(-lam[i])))[:, None]  # noqa: E731
    sgm = lambda i: (1 / (1 + np.exp(lam[i])))[:, None]  # noqa: E731  (1 - gamma, computed stably)

    def ddim_vp(z, x_hat, a, b):
        x_hat = np.clip(x_hat, -1, 1)
        e = (z - np.sqrt(gam(a)) * x_hat) / np.sqrt(sgm(a))
        return np.sqrt(gam(b)) * x_hat + np.sqrt(sgm(b)) * e

    def net(model, z, i):
        return to_numpy(model([z.astype("float32"), lam[i].astype("float32")]))

    z0 = np.sqrt(gam(i0)) * x + np.sqrt(sgm(i0)) * eps
    z1 = ddim_vp(z0, net(teacher_net, z0, i0), i0, i1)
    z2 = ddim_vp(z1, net(distiller.self_teacher.network, z1, i1), i1, i2)
    z2 = np.where((i1 == i2)[:, None], z1, z2)
    want = (z0 * np.sqrt(sgm(i2)) - z2 * np.sqrt(sgm(i0))) / (
        np.sqrt(gam(i0) * sgm(i2)) - np.sqrt(gam(i2) * sgm(i0)))

    x_t, sigma, got = distiller.distillation_targets(
        x.astype("float32"), eps.astype("float32"), g.astype("int32"), k.astype("int32"))
    got = to_numpy(got)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The VP DDIM step from z0 with the target x0 (unclipped) lands on z2.
    landed = np.sqrt(gam(i2)) * got + np.sqrt(sgm(i2)) * (z0 - np.sqrt(gam(i0)) * got) / np.sqrt(sgm(i0))
    np.testing.assert_allclose(landed, z2, rtol=1e-4, atol=1e-4)

    # snr_trunc loss: max(SNR, 1)-weighted squared error summed over elements, mean over the batch.
    pred = to_numpy(student(x_t, sigma))
    w = np.maximum(gam(i0) / sgm(i0), 1.0)[:, 0]
    want_loss = np.mean(w * ((pred - got) ** 2).sum(1))
    loss = distiller.student_loss(x_t, sigma, keras.ops.convert_to_tensor(got.astype("float32")))
    np.testing.assert_allclose(float(to_numpy(loss)), want_loss, rtol=1e-4)


def test_binary_targets_are_two_teacher_steps():
    means, stds, weights = circle_mixture()
    weights = weights / weights.sum()
    teacher = GaussianMixtureDenoiser(means, stds, weights)
    schedule = KarrasSchedule(8)
    distiller = BinaryDistiller(teacher, mlp_student(seed=4), schedule, teacher_solver="ddim",
                                steps_per_phase=5)
    assert distiller.time_schedule == (8, 4, 2, 1)
    rng = np.random.default_rng(2)
    x, noise = rng.uniform(-0.9, 0.9, (4, 2)), rng.standard_normal((4, 2))
    g = np.array([1, 2, 3, 4])
    i0, i1, i2 = 2 * g, 2 * g - 1, 2 * g - 2
    sig = schedule.sigmas
    s0, s1, s2 = sig[i0], sig[i1], sig[i2]
    x_t = x + s0[:, None] * noise
    x0a = mixture_mean(x_t, s0, means, stds, weights)
    x_1 = x0a + (s1 / s0)[:, None] * (x_t - x0a)
    x0b = mixture_mean(x_1, s1, means, stds, weights)
    x_2 = x0b + (s2 / s1)[:, None] * (x_1 - x0b)
    want = (x_2 * s0[:, None] - x_t * s2[:, None]) / (s0 - s2)[:, None]
    np.testing.assert_allclose(want[0], x0b[0], rtol=1e-12)  # terminal step: the teacher's x0
    _, _, got = distiller.distillation_targets(
        x.astype("float32"), noise.astype("float32"), g.astype("int32"), np.zeros(4, "int32"))
    np.testing.assert_allclose(to_numpy(got), want, rtol=1e-4, atol=2e-4)
