"""The student's FID during distillation (keras_tract.fid.monitor, experiment.Run.report_fid)."""

import json
import os

import keras
import numpy as np
import pytest
from helpers.common import once

from keras_tract import config as config_lib
from keras_tract.experiment import Run
from keras_tract.fid.inception import fid_inception
from keras_tract.fid.monitor import FIDMonitor
from keras_tract.fid.stats import frechet_distance, save_stats

ROOT = os.path.dirname(os.path.dirname(__file__))
SHAPE = (8, 8, 1)


class Generator:
    """A deterministic stand-in student: images from the noise, the step count and the labels."""

    def generate(self, noise, steps=None, labels=None):
        shift = 0.3 * np.argmax(labels, axis=-1)[:, None, None, None]
        return np.tanh(np.asarray(noise) * steps + shift)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    """A random-weight FID network at the smallest input side (75) and its weights file."""
    model = fid_inception(resolution=75, input_shape=SHAPE[:2] + (3,))  # built with zero kernels
    rng = np.random.default_rng(0)
    for kernel in [w for w in model.weights if w.path.endswith("kernel")]:
        fan_in = int(np.prod(kernel.shape[:-1]))
        kernel.assign(rng.uniform(-1, 1, kernel.shape).astype("float32") * np.sqrt(3 / fan_in))
    path = str(tmp_path_factory.mktemp("fid") / "random.weights.h5")
    model.save_weights(path)
    return keras.Model(model.inputs, model.outputs[0]), path


def statistics(pool3, images):
    """Mean and unbiased covariance of the pool3 features of uint8 `images`, in float64, in one call."""
    x = np.repeat(images, 3, axis=-1).astype("float32")
    feats = np.asarray(keras.ops.convert_to_numpy(pool3.predict_on_batch(x)), np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def uint8(x):
    return np.clip(x * 127.5 + 128.0, 0, 255).astype(np.uint8)


@once  # backend-independent bookkeeping around the FID network, whose parity has its own tests
def test_fid_monitor_uses_fixed_noise_and_matches_an_independent_computation(tmp_path, inception):
    pool3, weights = inception
    num, seed, classes = 8, 5, 3
    rng = np.random.default_rng(seed)  # the monitor's contract: this noise, then these labels
    noise = rng.standard_normal((num,) + SHAPE).astype("float32")
    labels = np.eye(classes, dtype="float32")[rng.integers(0, classes, num)]
    images = {s: uint8(Generator().generate(noise, s, labels)) for s in (1, 2)}
    mu, sigma = statistics(pool3, images[1])
    save_stats(str(tmp_path / "ref.npz"), mu, sigma, n=num)
    monitor = FIDMonitor(str(tmp_path / "ref.npz"), num, [1, 2], SHAPE, classes, batch=8, seed=seed,
                         weights=weights, resolution=75)
    first = monitor(Generator())
    again = np.concatenate(list(monitor.images(Generator(), 2)))
    np.testing.assert_array_equal(again, images[2])  # the same noise at every report
    expected = frechet_distance(*statistics(pool3, images[2]), mu, sigma)[0]
    assert expected > 0 and abs(first["fid_1step"]) < 1e-3 * expected  # 1 step: the very images of the reference
    np.testing.assert_allclose(first["fid_2step"], expected, rtol=1e-3)


@once  # a whole distillation in-process: one backend is enough
def test_distillation_reports_fid_or_says_once_why_not(tmp_path, capsys, inception):
    # An 8-level teacher grid and 1-step FIDs only keep the samplers and the 2048-d distances few.
    tiny = ["data.batch_size=16", "distill.train_len=128", "distill.num_steps=8", "distill.time_schedule=[8, 1]",
            "run.checkpoint_every=4", "run.sample_every=8", "run.num_images=4", "evaluate.num_samples=8",
            "evaluate.batch_size=8", "evaluate.steps=[1]", "evaluate.fid_every=64", "evaluate.fid_samples=8"]
    config = config_lib.load(os.path.join(ROOT, "configs", "digits.py"), tiny)
    assert Run(config, str(tmp_path / "off")).fid_monitor() is None
    assert "FID during training is off: no reference statistics: set evaluate.fid_ref" in capsys.readouterr().out

    weights = inception[1]
    save_stats(str(tmp_path / "ref.npz"), np.zeros(2048), np.eye(2048), n=100)
    config = config_lib.override(config, f"evaluate.fid_ref='{tmp_path / 'ref.npz'}'")
    os.environ.pop("FID_INCEPTION_WEIGHTS", None)
    run = Run(config, str(tmp_path / "on"))
    assert run.fid_monitor() is None and "No FID Inception weights" in capsys.readouterr().out
    run = Run(config, str(tmp_path / "on"))
    run.fid = FIDMonitor(str(tmp_path / "ref.npz"), 8, [1], SHAPE, batch=8, seed=1, weights=weights,
                         resolution=75)
    metrics = run()
    out = capsys.readouterr().out
    with open(tmp_path / "on" / "distill_fid.json") as f:
        history = json.load(f)
    assert [h["step"] for h in history] == [4, 8]  # every 64 samples = 4 steps of 16
    assert [h["samples"] for h in history] == [64, 128]
    assert all(np.isfinite(h["fid_1step"]) for h in history)
    assert metrics["fid"] == history and out.count("FID at step") == 2
    assert os.listdir(tmp_path / "on" / "tensorboard" / "distill")
