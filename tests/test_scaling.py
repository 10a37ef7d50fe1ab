"""Gradient accumulation, mixed precision and data-parallel training give the results of the plain step."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers.common import circle_mixture, mlp_student

from keras_tract import EDMTrainer, GaussianMixtureDenoiser, KarrasSchedule, TRACTDistiller, data, student_from


def tract(micro_batches):
    return TRACTDistiller(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(seed=1), KarrasSchedule(40),
                          (40, 8, 1), steps_per_phase=2, micro_batches=micro_batches, seed=3)


def edm(micro_batches):
    denoiser = mlp_student(seed=1)
    labelled = type(denoiser).from_config({**denoiser.get_config(), "network": keras.layers.serialize(
        type(denoiser.network)(hidden=32, depth=2, num_classes=3))})
    labelled(np.zeros((1, 2), "float32"), np.ones((1,), "float32"), np.eye(3, dtype="float32")[:1])
    rng = np.random.default_rng(2)
    labelled.set_weights([0.3 * rng.standard_normal(w.shape).astype("float32") for w in labelled.get_weights()])
    return EDMTrainer(labelled, ema_halflife_kimg=0.01, micro_batches=micro_batches, seed=3)


def train(make, micro_batches, steps=3, batch=8):
    trainer = make(micro_batches)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.9, 0.9, (steps * batch, 2)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, steps * batch)] if make is edm else None
    history = trainer.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return trainer, history.history["loss"][-1]


@pytest.mark.parametrize("make", [tract, edm], ids=["tract_3_phases", "edm_labels"])
def test_micro_batches_equal_one_step_on_the_whole_batch(make):
    whole, loss = train(make, 1)
    accumulated, loss_4 = train(make, 4)
    np.testing.assert_allclose(loss_4, loss, rtol=1e-5)
    assert abs(loss) > 1e-3
    for a, b in zip(whole.variables, accumulated.variables, strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6, err_msg=a.path)
    trained = whole.denoiser if make is edm else whole.student
    assert not np.allclose(trained.get_weights()[0], make(1).trainable_variables[0])


def test_micro_batches_must_split_the_batch():
    with pytest.raises(ValueError, match="micro_batches=0"):
        tract(0)
    trainer = tract(3)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    with pytest.raises(ValueError, match="batch size 8 must be a multiple of micro_batches=3"):
        trainer.fit(np.zeros((8, 2), "float32"), batch_size=8, verbose=0)


@pytest.mark.slow
@pytest.mark.skipif(keras.config.backend() == "jax",
                    reason="the policy handling is Keras code run here on TensorFlow and PyTorch (XLA would compile "
                           "two steps, over 2 minutes on CPUs); JAX's bfloat16 network: "
                           "test_networks.py::test_mixed_bfloat16_tracks_float32")
def test_mixed_bfloat16_distillation_tracks_float32():
    """The bundled digits teacher (`ddpmpp_small`) distilled into a perturbed copy in float32 and in
    mixed_bfloat16: the same draws and data, the running losses within 8% at every step."""
    teacher = keras.saving.load_model(data.DIGITS_TEACHER)
    x = next(iter(data.digits(8 * 4, seed=0)))
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        student = student_from(teacher, policy)
        rng = np.random.default_rng(0)
        student.set_weights([w + 0.1 * np.std(w) * rng.standard_normal(w.shape).astype("float32")
                             for w in student.get_weights()])
        distiller = TRACTDistiller(teacher, student, KarrasSchedule(40), (40, 1), steps_per_phase=100, seed=1)
        # Eager on TensorFlow: tracing this step takes longer than running it four times.
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8),
                          run_eagerly=keras.config.backend() == "tensorflow")
        losses[policy] = []
        log = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs, out=losses[policy]: out.append(float(logs["loss"])))
        distiller.fit(np.asarray(x), batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[log])
        assert student.compute_dtype == policy.replace("mixed_", "")
        assert distiller.self_teacher.compute_dtype == distiller.inference_student.compute_dtype == "float32"
        assert all(v.dtype == "float32" for v in student.trainable_variables)
    print("float32", losses["float32"], "mixed_bfloat16", losses["mixed_bfloat16"])
    assert np.all(np.isfinite(losses["mixed_bfloat16"])) and len(losses["float32"]) == 4
    np.testing.assert_allclose(losses["mixed_bfloat16"], losses["float32"], rtol=0.08)


@pytest.mark.slow
@pytest.mark.skipif(keras.config.backend() == "torch", reason="Keras trains data-parallel on JAX and TensorFlow")
def test_data_parallel_on_two_devices_equals_one_device():
    """`keras.distribution.DataParallel` (JAX) or `MirroredStrategy` (TensorFlow) over two CPU devices,
    with and without micro-batches and clipping: the single-device loss and weights."""
    here = os.path.dirname(__file__)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run([sys.executable, os.path.join(here, "helpers", "data_parallel.py")], env=env, cwd=here,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["devices"]) == 2
    for name in ("micro_batches_1", "micro_batches_2_clipped"):
        run = report[name]
        assert run["replicas"] == 2
        assert ("MirroredVariable" if keras.config.backend() == "tensorflow" else "'batch': 2") in run["kernel"]
        assert run["student_moved"] > 1e-4
        np.testing.assert_allclose(run["parallel_loss"], run["loss"], rtol=1e-5)
        assert run["max_weight_difference"] < 1e-3 * run["student_moved"]


@pytest.mark.skipif(keras.config.backend() != "torch", reason="PyTorch has no data-parallel fit() in Keras")
def test_data_parallel_is_refused_on_torch_in_one_line():
    from keras_tract import backend

    with pytest.raises(ValueError, match="^Data-parallel training needs KERAS_BACKEND=jax or tensorflow"):
        backend.data_parallel()


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TF_CONFIG is TensorFlow's")
def test_several_tensorflow_workers_are_refused_in_one_line(monkeypatch):
    from keras_tract import backend

    workers = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(workers))
    with pytest.raises(ValueError, match="TF_CONFIG names 2 workers, but Keras 3's TensorFlow fit"):
        backend.data_parallel()
    monkeypatch.setenv("TF_CONFIG", json.dumps({**workers, "cluster": {"worker": ["127.0.0.1:1"]}}))
    with backend.data_parallel():
        assert backend.num_replicas() == 1
