import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers.common import circle_mixture, mlp_student, once

import keras_tract
from keras_tract import config as config_lib
from keras_tract import convert
from keras_tract.experiment import Run
from keras_tract.preemption import Preemption

ROOT = os.path.dirname(os.path.dirname(__file__))
DIGITS = os.path.join(ROOT, "configs", "digits.py")
BACKEND = keras.config.backend()
# A run of seconds: 16-image batches, an MLP teacher, 12 distillation steps.
TINY = ["data.batch_size=16", "teacher.network='mlp_small'", "teacher.train_len=160", "teacher.lr_rampup=32",
        "distill.train_len=192", "distill.time_schedule=[40, 8, 1]", "run.checkpoint_every=4",
        "run.sample_every=8", "run.log_every=2", "run.num_images=9", "evaluate.num_samples=24",
        "evaluate.batch_size=24"]


def train(workdir, *args, wait=True, env=None):
    command = [sys.executable, os.path.join(ROOT, "tools", "train.py"), f"--workdir={workdir}", "--verbose=2",
               *[f"--set={item}" for item in TINY], *args]
    env = {**os.environ, "KERAS_BACKEND": BACKEND, **(env or {})}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=env)


def student_weights(workdir):
    return keras.saving.load_model(os.path.join(workdir, "student.keras")).get_weights()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The teacher stage, then an uninterrupted distillation, in one workdir."""
    workdir = str(tmp_path_factory.mktemp("run"))
    for stage in ("teacher", "distill"):
        result = train(workdir, f"--stage={stage}")
        assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "jax", reason="test_multihost.py runs the CLI on JAX, one and two processes")
def test_cli_trains_teacher_then_distills(finished):
    workdir, stdout = finished
    for name in ("config.json", "teacher.keras", "student.keras", "comparison.png", "distill_metrics.json",
                 "samples/teacher_00000008.png", "samples/distill_00000012.png"):
        assert os.path.isfile(os.path.join(workdir, name)), name
    assert glob.glob(os.path.join(workdir, "tensorboard", "distill", "events.out.tfevents.*"))
    assert not glob.glob(os.path.join(workdir, ".tmp-*"))
    with open(os.path.join(workdir, "distill_metrics.json")) as f:
        metrics = json.load(f)
    rows = {row["sampler"]: row for row in metrics["evaluation"]}
    assert metrics["steps"] == 12 and metrics["skipped_steps"] == 0
    assert rows["teacher, heun 40 steps"]["nfe"] == 79 and rows["teacher, heun 40 steps"]["rmse"] == 0.0
    assert all(row["fd"] > 0 for row in rows.values()) and rows["student, 1 step"]["rmse"] > 0
    assert "student, 2 steps" in stdout and "Frechet distance to test, 360 images" in stdout
    assert metrics["fd_reference"] == "test, 360 images"
    # The student file samples like the distiller's inference EMA: 1-step DDIM, clipped.
    student = keras.saving.load_model(os.path.join(workdir, "student.keras"))
    assert student.sampling["solver"] == "ddim" and student.sampling["steps"] == 1  # how it samples, saved with it
    assert keras_tract.solvers.saved_sampling(os.path.join(workdir, "teacher.keras"))["solver"] == "heun"
    noise = np.random.default_rng(0).standard_normal((4, 8, 8, 1)).astype("float32")
    x = keras.ops.convert_to_numpy(keras_tract.sample(student, keras_tract.KarrasSchedule(40), noise, steps=1,
                                                      solver="ddim", clip_denoised=True))
    assert x.shape == (4, 8, 8, 1) and np.abs(x).max() <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "jax", reason="test_multihost.py preempts JAX runs, on two processes")
def test_preempted_run_checkpoints_and_resumes_to_the_uninterrupted_result(finished, tmp_path):
    """SIGTERM once training has begun: the run stops after a step, checkpoints there and exits with
    status 75; resumed (on TensorFlow data-parallel, a MirroredStrategy over two CPUs), it ends
    with the uninterrupted single-device run's student."""
    reference, _ = finished
    workdir = str(tmp_path)
    teacher = f"--teacher={os.path.join(reference, 'teacher.keras')}"
    process = train(workdir, teacher, wait=False)
    begun = os.path.join(workdir, "tensorboard", "distill")  # made as fit() begins
    deadline = time.time() + 300
    while not os.path.exists(begun) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 75, stderr[-3000:]
    step = int(stderr.split("Preempted at step ")[1].split(":")[0])
    assert 1 <= step < 12 and not os.path.exists(os.path.join(workdir, "student.keras"))
    saved = keras.saving.load_model(os.path.join(workdir, "distill_checkpoint.keras"), compile=False)
    assert int(keras.ops.convert_to_numpy(saved.step_count)) == step
    resumed = train(workdir, teacher, *(() if BACKEND == "torch" else ("--data_parallel",)))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming distill from step {step} of 12" in resumed.stdout
    for a, b in zip(student_weights(reference), student_weights(workdir), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_sigterm_inside_preemption_stops_fit_after_the_step_and_is_restored_after():
    """`Preemption()` takes SIGTERM during `fit()` (here sent after the second step): the fit stops after
    that step, which `step` records on the global count; the previous handler is back afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    distiller = keras_tract.TRACTDistiller(keras_tract.GaussianMixtureDenoiser(*circle_mixture()), mlp_student(seed=1),
                                           keras_tract.KarrasSchedule(40), (40, 1), steps_per_phase=100)
    distiller.compile(optimizer=keras.optimizers.SGD(0.01))
    send = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch == 1 and os.kill(os.getpid(), signal.SIGTERM))
    x = np.zeros((64, 2), "float32")
    with Preemption() as preemption:
        distiller.fit(x, batch_size=8, epochs=1, verbose=0, callbacks=[send, preemption.callback(start_step=10)])
        assert signal.getsignal(signal.SIGTERM) != before
    assert preemption.step == 12 and int(keras.ops.convert_to_numpy(distiller.step_count)) == 2  # of 8 batches
    assert signal.getsignal(signal.SIGTERM) == before


def test_config_overrides_are_typed_and_checked():
    config = config_lib.load(DIGITS, ["distill.lr=2e-4", "distill.time_schedule=[40, 8, 1]", "data.flip=True",
                                      "distill.inference_momentum=0.999", "run.seed=3"])
    assert config["distill"]["lr"] == 2e-4 and config["distill"]["time_schedule"] == [40, 8, 1]
    assert config["data"]["flip"] is True and config["distill"]["inference_momentum"] == 0.999
    assert config_lib.load(DIGITS, ["distill.lr=1"])["distill"]["lr"] == 1.0  # int for a float is fine
    bad = {"distill.lrate=1e-3": "Unknown config key 'distill.lrate'",
           "distill.lr=fast": "distill.lr='fast' must be of type float",
           "data.flip=1": "data.flip=1 must be of type bool",
           "distill.method=consistency": "distill.method='consistency' must be one of",
           "data.batch_size=0": "data.batch_size=0 must be a positive number",
           "distill.train_len=8": "distill.train_len=8 is shorter than one batch",
           "distill.lr": "must look like section.key=value"}
    for item, message in bad.items():
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
            config_lib.load(DIGITS, [item])
    with pytest.raises(FileNotFoundError, match="--config=nowhere.py"):
        config_lib.load("nowhere.py")


def test_config_rejects_misspelt_keys_and_bad_values_before_running(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("from keras_tract.config import defaults\n\n\ndef get_config():\n    config = defaults()\n"
                    "    config['distill'].update(ema_residul=1e-4)\n    return config\n")
    with pytest.raises(ValueError, match=r"Unknown config key 'distill.ema_residul' \(did you mean "
                                         r"'distill.ema_residual'\?\)"):
        config_lib.load(str(path))
    bad = {"distill.clip_teacher=banana": "distill.clip_teacher='banana' must be of type bool or None",
           "distill.global_clipnorm=-1.0": "distill.global_clipnorm=-1.0 must be a positive number",
           "distill.inference_momentum=abc": "distill.inference_momentum='abc' must be of type float or None",
           "distill.inference_momentum=1.0": r"distill.inference_momentum=1.0 must be in \[0, 1\)",
           "run.seed=-1": "run.seed=-1 must be a number >= 0",
           "evaluate.steps=[3]": r"evaluate.steps=\[3\] must be student step counts that divide",
           "evaluate.reference_split='validation'": "evaluate.reference_split='validation' must be",
           "data.name='npz'": "data.path is needed for data.name='npz'",
           "distill.time_schedule=[40, 3]": r"distill.time_schedule=\[40, 3\]: .*3 does not divide 40",
           "evaluate.stepz=[1]": r"Unknown config key 'evaluate.stepz' \(did you mean 'evaluate.steps'\?\)",
           "evaluat.steps=[1]": r"Unknown config section 'evaluat' in 'evaluat.steps' \(did you mean 'evaluate'\?\)"}
    for item, message in bad.items():
        with pytest.raises(ValueError, match=message):
            config_lib.load(DIGITS, [item])
    with pytest.raises(ValueError, match="Config lacks the section 'teacher'"):
        config_lib.validate({"data": {}})
    # The allowed choices are the code's own.
    allowed = config_lib.choices()
    assert allowed["distill.loss"] is keras_tract.distiller.LOSSES
    assert set(allowed["teacher.network"]) == set(keras_tract.networks.PRESETS)


@pytest.mark.parametrize("name", ["digits", "cifar10_edm", "cifar10_vp", "imagenet64_edm"])
def test_shipped_configs_validate(name):
    config = config_lib.load(os.path.join(ROOT, "configs", f"{name}.py"))
    ts, distill = config["distill"]["time_schedule"], config["distill"]
    keras_tract.distiller.check_time_schedule(ts, distill["num_steps"])
    assert distill["train_len"] % config["data"]["batch_size"] == 0
    assert distill["teacher"] in keras_tract.builders.BUNDLED or distill["teacher"] in convert.PUBLISHED


def test_missing_or_misfit_teacher_and_changed_config_fail_clearly(tmp_path):
    config = config_lib.load(DIGITS, TINY)
    with pytest.raises(FileNotFoundError, match="File not found: --teacher=.*missing.keras"):
        Run(config, str(tmp_path / "a"), teacher=str(tmp_path / "missing.keras")).build()
    small = keras_tract.EDMPrecond(keras_tract.networks.get("mlp_small"))
    small(np.zeros((1, 4, 4, 1), "float32"), np.ones((1,), "float32"))
    path = str(tmp_path / "small.keras")
    small.save(path)
    with pytest.raises(ValueError, match=r"takes images of shape \(4, 4, 1\).*images of shape \(8, 8, 1\)"):
        Run(config, str(tmp_path / "b"), teacher=path).build()
    assert not (tmp_path / "b" / "config.json").exists()  # a failed check leaves no run behind


@once
def test_cli_errors_are_one_line(tmp_path):
    result = train(str(tmp_path), "--set=distill.loss='l1'", env={"KERAS_BACKEND": "jax"})  # JAX starts soonest
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "train.py: error: Config value distill.loss='l1' must be one of ['edm', 'snr_trunc'].")


@once  # tf.data and NumPy, the same on every backend
def test_fd_reference_is_held_out_each_image_once_and_labelled(tmp_path):
    from keras_tract.builders import reference_images

    train_images, _ = keras_tract.data.digits_arrays("train")
    test_images, _ = keras_tract.data.digits_arrays("test")
    np.savez(tmp_path / "train.npz", labels=np.zeros(len(train_images)), x=train_images)
    np.savez(tmp_path / "test.npz", x=test_images)
    def as_set(images):
        return sorted(map(bytes, np.round((images + 1) * 127.5).astype(np.uint8).reshape(len(images), -1)))

    digits = config_lib.load(DIGITS, TINY)
    images, label = reference_images(digits)  # the 360 test digits, once each, though the batch is 24
    assert label == "test, 360 images" and as_set(images) == as_set(test_images.astype(np.float64) / 127.5 - 1)
    npz = config_lib.load(DIGITS, TINY + ["data.name='npz'", f"data.path='{tmp_path / 'train.npz'}'",
                                          "data.key='x'"])
    images, label = reference_images(npz)  # no held-out set named: the training images, said so
    assert label.startswith("train (no held-out set") and len(images) == len(train_images)
    named = config_lib.override(npz, f"evaluate.reference='{tmp_path / 'test.npz'}'")
    images, label = reference_images(config_lib.validate(named))
    assert label == f"{tmp_path / 'test.npz'}, 360 images"
    assert as_set(images) == as_set(test_images.astype(np.float64) / 127.5 - 1)
    assert reference_images(config_lib.override(digits, "evaluate.reference_split=None")) == (None, None)


@once  # workdir and file logic, the same on every backend
def test_workdir_is_written_only_after_checks_and_guards_its_run(tmp_path):
    config = config_lib.load(DIGITS, TINY)
    teacher = keras_tract.EDMPrecond(keras_tract.networks.get("mlp_small"))
    teacher(np.zeros((1, 8, 8, 1), "float32"), np.ones((1,), "float32"))
    paths = [str(tmp_path / f"teacher{i}.keras") for i in range(2)]
    for i, path in enumerate(paths):
        teacher.network.proj_out[1].assign(np.full((64,), float(i), "float32"))
        teacher.save(path)
    workdir = tmp_path / "run"
    # A failed check writes nothing, so the corrected command is not refused.
    with pytest.raises(FileNotFoundError, match="File not found: --teacher="):
        Run(config, str(workdir), teacher=str(tmp_path / "missing.keras")).build()
    assert not (workdir / "config.json").exists()
    (workdir / ".tmp-99999-distill_checkpoint.keras").write_bytes(b"left by a killed process")
    run = Run(config, str(workdir), teacher=paths[0])
    run.build()
    assert (workdir / "config.json").exists() and not list(workdir.glob(".tmp-*"))
    with pytest.raises(ValueError, match="is in use by another process"):
        Run(config, str(workdir), teacher=paths[0]).build()
    run.release()
    # The teacher is part of the run's identity; evaluation settings are not.
    with pytest.raises(ValueError, match=r"distills a teacher with SHA-256 [0-9a-f]{64}, but --teacher=.*teacher1"):
        Run(config, str(workdir), teacher=paths[1]).build()
    Run(config_lib.override(config, "evaluate.num_samples=8"), str(workdir), teacher=paths[0])
    with pytest.raises(ValueError, match="holds a run with another config .differs in distill.lr"):
        Run(config_lib.override(config, "distill.lr=0.5"), str(workdir), teacher=paths[0])
    (workdir / "distill_checkpoint.keras").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable .keras file.*The checkpoint is corrupt: delete"):
        Run(config, str(workdir), teacher=paths[0]).build()
    with pytest.raises(ValueError, match="is a file, not a folder"):
        Run(config, str(workdir / "config.json"))


def test_a_non_finite_result_is_never_saved():
    from keras_tract.experiment import check_finite

    model = keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=8, depth=1))
    model(np.zeros((1, 2), "float32"), np.ones((1,), "float32"))
    check_finite(model, "the student")
    model.network.proj_out[0].assign(np.full((8, 2), np.nan, "float32"))
    with pytest.raises(FloatingPointError, match="Not saving the student: 1 of its weights hold NaN or infinity"):
        check_finite(model, "the student")
