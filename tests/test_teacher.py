import os

import keras
import numpy as np
import pytest
import scipy.linalg
from helpers.common import mlp_student, once, to_numpy

import keras_tract
from keras_tract import EDMTrainer, KarrasSchedule, LinearRampUp, data

TEACHER = os.path.join(os.path.dirname(keras_tract.__file__), "assets", "digits_teacher.keras")


def frechet(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real))


def test_loss_is_edm_weighted_error():
    denoiser = mlp_student(dim=3, seed=0)
    trainer = EDMTrainer(denoiser)
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, (5, 3)).astype("float32")
    sigma = np.array([0.01, 0.2, 1.0, 5.0, 60.0], "float32")
    x_t = (y + sigma[:, None] * rng.standard_normal((5, 3))).astype("float32")
    d = to_numpy(denoiser(x_t, sigma))
    s = sigma.astype(np.float64)[:, None]
    want = np.mean(np.sum((s**2 + 0.25) / (s * 0.5) ** 2 * (d - y) ** 2, axis=1))
    got = float(to_numpy(trainer.step_loss((x_t, sigma, y))))
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_ema_follows_halflife_in_images():
    denoiser = mlp_student(dim=2, seed=1)
    trainer = EDMTrainer(denoiser, ema_halflife_kimg=0.016, ema_rampup_ratio=None)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = np.random.default_rng(2).uniform(-1, 1, (16, 2)).astype("float32")
    trainer.fit(x[:8], batch_size=8, verbose=0)
    ema_before = [np.array(w) for w in trainer.ema.get_weights()]
    trainer.fit(x[8:], batch_size=8, verbose=0)
    beta = 0.5 ** (8 / 16.0)
    for before, after, net in zip(ema_before, trainer.ema.get_weights(), denoiser.get_weights()):
        np.testing.assert_allclose(after, beta * before + (1 - beta) * net, rtol=1e-5, atol=1e-6)
    assert int(to_numpy(trainer.images_seen)) == 16


def test_rampup_schedule():
    schedule = LinearRampUp(1e-3, 100)
    np.testing.assert_allclose([float(to_numpy(schedule(s))) for s in (0, 50, 100, 500)], [0, 5e-4, 1e-3, 1e-3],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="rampup_steps=-1"):
        LinearRampUp(1e-3, -1)


def test_lowers_loss_on_digits_and_resumes(tmp_path):
    denoiser = keras_tract.EDMPrecond(keras_tract.networks.get("mlp_small"))
    denoiser(np.zeros((1, 8, 8, 1), "float32"), np.ones((1,), "float32"))
    trainer = EDMTrainer(denoiser, ema_halflife_kimg=2.0)
    trainer.compile(optimizer=keras.optimizers.Adam(LinearRampUp(2e-3, 20), epsilon=1e-8))
    history = trainer.fit(data.digits(64), epochs=4, steps_per_epoch=50, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses

    images = np.concatenate([np.asarray(b) for b in data.digits(16, seed=5).take(4)])
    straight = keras.saving.load_model(_save(trainer, tmp_path / "a.keras"))
    straight.fit(images, batch_size=16, shuffle=False, verbose=0)
    resumed = keras.saving.load_model(_save(trainer, tmp_path / "b.keras"))
    resumed.fit(images[:32], batch_size=16, shuffle=False, verbose=0)
    resumed = keras.saving.load_model(_save(resumed, tmp_path / "c.keras"))
    resumed.fit(images[32:], batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(straight.ema.get_weights() + straight.denoiser.get_weights(),
                    resumed.ema.get_weights() + resumed.denoiser.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _save(model, path):
    model.save(str(path))
    return str(path)


@pytest.mark.slow
@once  # a property of the shipped file; the sampler has per-backend tests
@pytest.mark.skipif(not os.path.exists(TEACHER), reason="bundled digits teacher not built")
def test_bundled_digits_teacher_samples_are_digit_like():
    teacher = keras.saving.load_model(TEACHER)
    noise = np.random.default_rng(0).standard_normal((300, 8, 8, 1)).astype("float32")
    samples = np.clip(to_numpy(keras_tract.sample(teacher, KarrasSchedule(40), noise)), -1, 1)
    test = data.digits_arrays("test")[0] / 127.5 - 1
    train = data.digits_arrays("train")[0] / 127.5 - 1
    rng = np.random.default_rng(1)
    fd_samples = frechet(samples, test)
    fd_noise = frechet(np.clip(rng.standard_normal((300, 64)), -1, 1), test)
    fd_mean = frechet(train.mean(0, keepdims=True) + 1e-3 * rng.standard_normal((300, 8, 8, 1)), test)
    fd_train = frechet(train, test)
    print(f"pixel FD to the test split: teacher {fd_samples:.2f}, train split {fd_train:.2f}, "
          f"mean image {fd_mean:.2f}, clipped noise {fd_noise:.2f}")
    assert fd_samples < 0.2 * fd_mean and fd_samples < 0.05 * fd_noise
    assert fd_samples < 3 * fd_train


def test_dropout_masks_change_every_step_and_resume_exactly(tmp_path):
    """Dropout state lives through the train step on every backend and is saved with the trainer."""
    keras.utils.set_random_seed(3)
    network = keras_tract.networks.MLPNetwork(hidden=16, depth=2, dropout=0.5)
    denoiser = keras_tract.EDMPrecond(network)
    denoiser(np.zeros((1, 2), "float32"), np.ones((1,), "float32"))
    trainer = EDMTrainer(denoiser, seed=1)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05), run_eagerly=True)  # the same train_step, uncompiled
    x = np.random.default_rng(4).uniform(-1, 1, (8, 2)).astype("float32")

    def next_mask(model):
        """The mask the model's dropout layer draws next, without advancing it."""
        drop = model.denoiser.network.drop
        state = keras.ops.copy(drop.seed_generator.state.value)
        mask = to_numpy(drop(np.ones((4, 16), "float32"), training=True)) != 0
        drop.seed_generator.state.assign(state)
        return mask

    masks = [next_mask(trainer)]
    for _ in range(2):
        trainer.fit(x, batch_size=8, shuffle=False, verbose=0)  # the same batch at every step
        masks.append(next_mask(trainer))
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])

    path = str(tmp_path / "trainer.keras")
    trainer.save(path)
    resumed = keras.saving.load_model(path)
    np.testing.assert_array_equal(next_mask(resumed), masks[2])
    for model in (trainer, resumed):
        model.fit(x, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(trainer.denoiser.get_weights(), resumed.denoiser.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-6)
