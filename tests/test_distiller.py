import importlib
import os
import subprocess
import sys
import threading
import traceback

import keras
import numpy as np
import pytest
from helpers.common import circle_mixture, learns_on_jax, mixture_data, mlp_student, once, once_beside_jax, to_numpy

import keras_tract
from keras_tract import GaussianMixtureDenoiser, KarrasSchedule, TRACTDistiller

BACKEND = keras.config.backend()


def make_distiller(time_schedule=(40, 1), steps_per_phase=4, hidden=32, **kwargs):
    teacher = GaussianMixtureDenoiser(*circle_mixture())
    return TRACTDistiller(teacher, mlp_student(hidden=hidden, seed=1), KarrasSchedule(40), time_schedule,
                          steps_per_phase=steps_per_phase, **kwargs)


def compiled(distiller, lr=1e-3):
    distiller.compile(optimizer=keras.optimizers.Adam(lr, epsilon=1e-8))
    return distiller


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def assert_weights_equal(a, b, **tol):
    for wa, wb in zip(weights_of(a), weights_of(b), strict=True):
        np.testing.assert_allclose(wa, wb, **tol)


@pytest.mark.slow
@learns_on_jax
def test_learns_one_step_sampler_from_exact_teacher():
    """2-D mixture of 8 Gaussians, (40, 1): 1-step student vs the teacher's 40-step Heun samples."""
    import tensorflow as tf

    steps = 1500
    teacher = GaussianMixtureDenoiser(*circle_mixture())
    schedule = KarrasSchedule(40)
    distiller = TRACTDistiller(teacher, mlp_student(hidden=128, depth=3), schedule, (40, 1),
                               steps_per_phase=steps)
    lr = keras.optimizers.schedules.CosineDecay(3e-3, steps)
    distiller.compile(optimizer=keras.optimizers.Adam(lr, epsilon=1e-8))
    data = tf.data.Dataset.from_tensor_slices(mixture_data(100_000)).shuffle(10_000, seed=0)
    distiller.fit(data.repeat().batch(256, drop_remainder=True), epochs=1, steps_per_epoch=steps, verbose=0)

    noise = np.random.default_rng(1).standard_normal((2000, 2)).astype("float32")
    reference = to_numpy(keras_tract.sample(teacher, schedule, noise))
    rmse = lambda x: float(np.sqrt(np.mean(np.sum((to_numpy(x) - reference) ** 2, axis=-1))))  # noqa: E731
    student = rmse(distiller.generate(noise, steps=1))
    naive = rmse(keras_tract.sample(teacher, schedule, noise, steps=1, solver="ddim"))
    print(f"1-step RMSE to the 40-step teacher: TRACT {student:.4f}, naive teacher {naive:.4f}")
    assert naive > 0.5
    assert student < 0.1
    assert int(to_numpy(distiller.skipped_steps)) == 0


@pytest.mark.parametrize("time_schedule, phase, groups, offsets", [
    ((40, 1), 0, 1, 40), ((40, 8, 1), 0, 8, 5), ((40, 8, 1), 1, 1, 8)])
def test_draws_are_uniform_levels_and_standard_normal_noise(time_schedule, phase, groups, offsets):
    """This backend's draws: the group uniform on [1, groups], the offset uniform on [0, offsets), the noise
    N(0, 1), and the next draw new (chi-square and Kolmogorov-Smirnov tests at p = 1e-4)."""
    from scipy import stats

    distiller = make_distiller(time_schedule)
    distiller.phase.assign(phase)
    num = 8000
    noise, group, offset = (to_numpy(t) for t in distiller.draw((num, 2)))
    for values, low, count in ((group, 1, groups), (offset, 0, offsets)):
        assert values.shape == (num,) and values.min() >= low and values.max() == low + count - 1
        if count > 1:
            assert stats.chisquare(np.bincount(values.astype(int) - low, minlength=count)).pvalue > 1e-4
    assert noise.shape == (num, 2) and stats.kstest(noise.ravel(), "norm").pvalue > 1e-4
    assert not np.allclose(to_numpy(distiller.draw((num, 2))[0]), noise)


def test_phases_refresh_teacher_and_give_each_step_count():
    distiller = compiled(make_distiller((40, 8, 1), steps_per_phase=3))
    x = mixture_data(5 * 16)
    distiller.fit(x[:48], batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert int(to_numpy(distiller.phase)) == 1 and distiller.current_steps() == 1
    assert_weights_equal(distiller.phase_teacher, distiller.inference_student, rtol=0, atol=0)
    snapshot = weights_of(distiller.phase_teacher)
    history = distiller.fit(x[48:], batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert history.history["phase"][-1] == 1
    for a, b in zip(snapshot, weights_of(distiller.phase_teacher)):
        np.testing.assert_array_equal(a, b)  # the teacher stays fixed inside a phase
    assert any(np.abs(a - b).max() > 0 for a, b in zip(snapshot, weights_of(distiller.inference_student)))
    noise = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    assert to_numpy(distiller.generate(noise)).shape == (4, 2)
    eight = to_numpy(distiller.generate(noise, steps=8))
    assert eight.shape == (4, 2) and np.abs(eight).max() <= 1.0


def test_save_mid_phase_and_resume_equals_uninterrupted(tmp_path):
    x = mixture_data(6 * 8, seed=3)
    straight = compiled(make_distiller((40, 8, 1), steps_per_phase=4))
    straight.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)

    first = compiled(make_distiller((40, 8, 1), steps_per_phase=4))
    first.fit(x[:24], batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "run.keras")
    first.save(path)
    resumed = keras.saving.load_model(path)
    assert len(resumed.trainable_variables) == len(resumed.student.trainable_variables)
    assert int(to_numpy(resumed.optimizer.iterations)) == 3
    for name in ("student", "inference_student", "self_teacher", "phase_teacher"):
        assert_weights_equal(getattr(resumed, name), getattr(first, name), rtol=0, atol=0)
    resumed.fit(x[24:], batch_size=8, epochs=1, shuffle=False, verbose=0)

    assert int(to_numpy(resumed.phase)) == int(to_numpy(straight.phase)) == 1
    for name in ("student", "inference_student", "self_teacher", "phase_teacher"):
        assert_weights_equal(getattr(resumed, name), getattr(straight, name), rtol=1e-6, atol=1e-7)
    assert int(to_numpy(resumed.inference_count)) == int(to_numpy(straight.inference_count)) == 6


def test_inference_student_saves_on_its_own(tmp_path):
    distiller = compiled(make_distiller())
    distiller.fit(mixture_data(16), batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "student.keras")
    distiller.inference_student.save(path)
    loaded = keras.saving.load_model(path)
    noise = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    np.testing.assert_allclose(to_numpy(keras_tract.sample(loaded, distiller.schedule, noise, steps=1,
                                                           solver="ddim", clip_denoised=True)),
                               to_numpy(distiller.generate(noise, steps=1)), rtol=1e-6, atol=1e-6)


def test_non_finite_step_is_skipped():
    x = mixture_data(16)
    reference = compiled(make_distiller())
    reference.fit(x[:8], batch_size=8, epochs=1, shuffle=False, verbose=0)
    bad = x.copy()
    bad[9, 0] = np.nan
    distiller = compiled(make_distiller())
    history = distiller.fit(bad, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert history.history["skipped"][-1] == 1
    assert np.isfinite(history.history["loss"][-1])
    for name in ("student", "inference_student", "self_teacher"):
        assert_weights_equal(getattr(distiller, name), getattr(reference, name), rtol=1e-6, atol=1e-7)
    assert int(to_numpy(distiller.optimizer.iterations)) == 1


def test_all_finite_sees_any_non_finite_gradient():
    all_finite = importlib.import_module(f"keras_tract.backend.{keras.config.backend()}").all_finite

    def check(loss, *grads):
        tensors = [keras.ops.convert_to_tensor(np.asarray(t, "float32")) for t in (loss, *grads)]
        return bool(to_numpy(all_finite(tensors[0], tensors[1:])))

    big = np.full((3, 2), 3e38)  # finite, but its square overflows float32
    assert check(1.0, big, np.zeros((4,)), -big)
    for bad in (np.inf, -np.inf, np.nan):
        grad = np.zeros((2, 5))
        grad[1, 3] = bad
        assert not check(1.0, big, grad, np.ones(3))
        assert not check(bad, big, np.ones(3))
    half = keras.ops.cast(keras.ops.convert_to_tensor(np.array([1.0, np.inf], "float32")), "bfloat16")
    assert not to_numpy(all_finite(keras.ops.convert_to_tensor(0.5), [half]))


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's adapter")
def test_scope_defaults_fill_only_unset_scopes():
    """`fill_scope_defaults` sets Keras' unset scopes to None (what Keras reads for them) and keeps entered ones."""
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import in_stateless_scope
    from keras.src.backend.torch.core import get_device

    from keras_tract.backend.torch import _SCOPES, fill_scope_defaults

    seen = []

    def fresh_thread():  # Keras' scopes are thread-local: a new thread has none set
        tracker = global_state.GLOBAL_STATE_TRACKER
        unset = [name for name in _SCOPES if not hasattr(tracker, name)]
        fill_scope_defaults()
        seen.append((unset, [getattr(tracker, name) for name in _SCOPES]))

    thread = threading.Thread(target=fresh_thread)
    thread.start()
    thread.join()
    assert seen == [(list(_SCOPES), [None, None, None])]
    with keras.device("meta"), keras.StatelessScope() as scope:
        fill_scope_defaults()
        assert get_device() == "meta" and in_stateless_scope()
        assert global_state.get_global_attribute("stateless_scope") is scope
    assert get_device() != "meta" and not in_stateless_scope()


def test_step_lists_are_kept_for_one_fit():
    """`per_fit` keeps what a step walks (here the EMA's weight pairs) until the next `fit()`."""
    distiller = compiled(make_distiller())
    distiller.fit(mixture_data(16), batch_size=8, epochs=1, shuffle=False, verbose=0)
    floats, others = distiller.per_fit("inference_student", None)
    assert [(a.path, s.path) for a, s in floats] == [
        (a.path, s.path) for a, s in zip(distiller.inference_student.weights, distiller.student.weights)]
    assert others == [] and distiller.per_fit("probe", lambda: 1) == distiller.per_fit("probe", lambda: 2) == 1
    distiller.fit(mixture_data(16), batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert distiller.per_fit("probe", lambda: 2) == 2


@pytest.mark.skipif(keras.config.backend() != "torch", reason="JAX and TensorFlow trace the step: numbers in it are "
                                                             "constants of the program")
@pytest.mark.parametrize("teacher", ["mixture", "edm"])
def test_torch_step_copies_no_host_values_to_the_device(teacher, monkeypatch):
    """PyTorch steps of both phases (teacher, phase teacher, self-teacher, Adam, both EMAs) turn no Python
    number or NumPy array into a tensor: on a GPU each such copy waits for all queued work. Keras' own
    random-state updates are left out (2 a step)."""
    import torch

    teacher = make_distiller().teacher if teacher == "mixture" else mlp_student(seed=2)
    distiller = compiled(TRACTDistiller(teacher, mlp_student(seed=1), KarrasSchedule(40), (40, 8, 1),
                                        steps_per_phase=2))
    x = mixture_data(8)
    distiller.fit(x, batch_size=8, epochs=1, verbose=0)
    batch = (torch.as_tensor(x),)
    package = os.path.dirname(keras_tract.__file__)
    copies, as_tensor = [], torch.as_tensor

    def recording(data, *args, **kwargs):
        if not isinstance(data, torch.Tensor):
            stack = traceback.extract_stack()
            if not any(os.sep.join(("keras", "src", "random")) in frame.filename for frame in stack):
                copies.append([f"{os.path.basename(frame.filename)}:{frame.lineno}" for frame in stack
                               if frame.filename.startswith(package)][-2:])
        return as_tensor(data, *args, **kwargs)

    monkeypatch.setattr(torch, "as_tensor", recording)
    for _ in range(2):  # the second step of phase 0 (it starts phase 1), the first of phase 1 (the phase teacher's)
        distiller.train_step(batch)
    monkeypatch.undo()
    assert int(keras.ops.convert_to_numpy(distiller.phase)) == 1
    assert copies == [], copies


@pytest.mark.skipif(BACKEND != "torch", reason="JAX and TensorFlow run the step as one program")
def test_torch_step_reads_nothing_back_from_the_device(monkeypatch):
    """A one-phase PyTorch step (teacher, self-teacher, finite check, Adam, both EMAs, counters), a finite
    and a skipped one, reads no tensor's value on the host: on a GPU each read waits for all queued work.
    Keras' random-number seeds are left out (2 a step)."""
    import torch

    distiller = compiled(make_distiller())
    x = mixture_data(8)
    distiller.fit(x, batch_size=8, epochs=1, verbose=0)
    bad = x.copy()
    bad[0, 0] = np.nan
    reads = []

    def recording(name):
        read = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            stack = traceback.extract_stack()[:-1]
            if not any(os.sep.join(("keras", "src", "backend", "torch", "random.py")) in f.filename for f in stack):
                reads.append((name, [f"{os.path.basename(f.filename)}:{f.lineno}" for f in stack[-3:]]))
            return read(self, *args, **kwargs)

        return method

    for name in ("__bool__", "item", "tolist", "numpy", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, recording(name))
    for batch in (x, bad):
        distiller.train_step((torch.as_tensor(batch),))
    monkeypatch.undo()
    assert reads == [], reads
    assert int(distiller.optimizer.iterations) == 2 and int(distiller.skipped_steps) == 1


class SubclassedAdam(keras.optimizers.Adam):
    """Keras' Adam under a class of its own: its update always runs Keras' code."""


@pytest.mark.skipif(BACKEND != "torch", reason="the fused Adam kernel is PyTorch's")
@pytest.mark.parametrize("options", [{}, {"clipnorm": 1e-3}, {"amsgrad": True}, {"weight_decay": 0.1}])
def test_torch_fused_adam_is_keras_adam(options):
    """Keras' plain Adam runs as PyTorch's fused kernel with the same results as Keras' own update (a
    learning rate halved at every step, an epsilon that matters, a phase change); where Adam does more
    (clipping, amsgrad, weight decay) Keras' own code runs."""
    learning_rate = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=1, decay_rate=0.5)
    x = mixture_data(64)
    runs = []
    for optimizer in (keras.optimizers.Adam, SubclassedAdam):
        distiller = make_distiller((40, 8, 1), steps_per_phase=3)
        distiller.compile(optimizer=optimizer(learning_rate, epsilon=1e-3, **options))
        distiller.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
        runs.append(distiller)
    fused, reference = runs
    assert (fused._per_fit.values["adam_slots"] is not None) == (not options)
    assert int(fused.optimizer.iterations) == 8 and int(fused.phase) == 1
    for a, b in zip(fused.variables + fused.optimizer.variables,
                    reference.variables + reference.optimizer.variables, strict=True):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-7, err_msg=a.path)


def test_only_student_is_trainable():
    distiller = make_distiller((40, 8, 1))
    assert [v.path for v in distiller.trainable_variables] == [
        v.path for v in distiller.student.trainable_variables]


@pytest.mark.slow
@once
def test_checkpoint_resumes_on_another_backend(tmp_path):
    """Checkpointed under PyTorch, resumed under JAX, whose checkpoint then resumes under TensorFlow and
    PyTorch: each loads every saved value (weights, counters, random state, optimizer state), resumes with
    its own optimizer and compile default, and its next steps track the writer's own next steps."""
    script = os.path.join(os.path.dirname(__file__), "helpers", "resume_backend.py")

    def run(backend, *resume):
        result = subprocess.run([sys.executable, script, str(tmp_path), *resume], capture_output=True, text=True,
                                env={**os.environ, "KERAS_BACKEND": backend})
        assert result.returncode == 0, result.stderr[-3000:]

    run("torch")
    for backend, source in (("jax", "torch"), ("tensorflow", "jax"), ("torch", "jax")):
        saved, ahead = dict(np.load(tmp_path / f"{source}_saved.npz")), dict(np.load(tmp_path / f"{source}_steps.npz"))
        run(backend, source)
        loaded, steps = dict(np.load(tmp_path / f"{backend}_loaded.npz")), np.load(tmp_path / f"{backend}_steps.npz")
        # In order (a variable's path may change across a load), the optimizer's iteration count among them.
        assert len(loaded["paths"]) == len(saved["paths"]) and "adam/iteration" in saved["paths"]
        for i, path in enumerate(saved["paths"]):
            np.testing.assert_array_equal(loaded[f"arr_{i}"], saved[f"arr_{i}"], err_msg=f"{source}->{backend}: {path}")
        assert int(steps["steps"]) == 4 and int(steps["phase"]) == 1
        assert ("torch_adam" in str(steps["optimizer"])) == (backend == "torch")
        assert bool(steps["compiled"]) == (backend == "jax")  # "auto": XLA on JAX, eager PyTorch, TF on CPU
        # The backends draw other numbers from the same random state: two Adam steps of 1e-4 apart at most.
        arrays = [k for k in ahead if k.startswith("arr_")]
        assert arrays and len(arrays) == len([k for k in steps.files if k.startswith("arr_")])
        for key in arrays:
            np.testing.assert_allclose(steps[key], ahead[key], atol=5e-4)


@pytest.mark.slow
@once_beside_jax  # its processes pick their own backend
def test_cross_backend_parity(tmp_path):
    here = os.path.dirname(__file__)
    results = {}
    for backend in ("jax", "tensorflow", "torch"):
        path = str(tmp_path / f"{backend}.npz")
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": here}
        subprocess.run([sys.executable, os.path.join(here, "helpers", "parity_step.py"), path], env=env, check=True,
                       capture_output=True)
        results[backend] = dict(np.load(path))
    base = results["jax"]
    assert any(np.abs(base[k]).max() > 0 for k in base)
    for backend in ("tensorflow", "torch"):
        assert base.keys() == results[backend].keys()
        for key in base:
            np.testing.assert_allclose(results[backend][key], base[key], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{backend}: {key}")


@pytest.mark.parametrize("time_schedule, message", [
    ((20, 1), "must start at"),
    ((40, 40, 1), "strictly decreasing"),
    ((40, 3, 1), "3 does not divide 40"),
    ((40,), "at least two"),
])
def test_bad_time_schedule(time_schedule, message):
    with pytest.raises(ValueError, match=message):
        make_distiller(time_schedule)


def test_bad_data_and_shapes():
    distiller = compiled(make_distiller())
    with pytest.raises(ValueError, match="dtype uint8"):
        distiller.fit(np.full((8, 2), 200, "uint8"), batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=r"\[-1, 1\], got values in \[0, 255\]"):
        distiller.fit(np.full((8, 2), 255.0, "float32") * np.array([0, 1], "float32"), batch_size=8, verbose=0)
    wide = TRACTDistiller(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(dim=3), KarrasSchedule(40),
                          (40, 1), steps_per_phase=4)
    wide.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"student cannot denoise the data \(shape \(2,\)\)"):
        wide.fit(np.zeros((8, 2), "float32"), batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="self_teacher_momentum=1.5"):
        make_distiller(self_teacher_momentum=1.5)
    with pytest.raises(ValueError, match="loss='l1'"):
        make_distiller(loss="l1")


def test_binary_distiller_halves_through_its_phases():
    distiller = keras_tract.BinaryDistiller(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(seed=2),
                                            KarrasSchedule(8), steps_per_phase=2)
    compiled(distiller).fit(mixture_data(7 * 8), batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert distiller.time_schedule == (8, 4, 2, 1)
    assert int(to_numpy(distiller.phase)) == 2 and distiller.current_steps() == 1
    assert distiller.self_teacher is None
    noise = np.random.default_rng(0).standard_normal((3, 2)).astype("float32")
    assert np.all(np.isfinite(to_numpy(distiller.generate(noise, steps=2))))
    with pytest.raises(ValueError, match="halve"):
        keras_tract.BinaryDistiller(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(),
                                    KarrasSchedule(8), time_schedule=(8, 2, 1), steps_per_phase=2)


def test_divergence_stops_fit_and_nan_data_is_refused():
    teacher = GaussianMixtureDenoiser(*circle_mixture())
    distiller = TRACTDistiller(teacher, mlp_student(seed=2), KarrasSchedule(40), (40, 1), steps_per_phase=100)
    distiller.compile(optimizer=keras.optimizers.SGD(1e12), run_eagerly=True)  # a few steps: skip compiling
    x = mixture_data(8 * 40)
    with pytest.raises(FloatingPointError, match=r"Training diverged: 5 of the last \d+ steps had a non-finite"):
        distiller.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    steps, skipped = (int(to_numpy(v)) for v in (distiller.step_count, distiller.skipped_steps))
    assert skipped >= 5 and steps < 40  # stopped early, not at the end of the epoch
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="Training data must be finite, got 1 NaN or infinite values"):
        distiller.fit(bad, batch_size=8, verbose=0)


def test_unbuilt_students_build_like_keras_models(tmp_path):
    """An unbuilt student builds for its network's or the teacher's shape, else on the first batch."""
    x = mixture_data(16)
    student = keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=16, depth=1))
    distiller = TRACTDistiller(GaussianMixtureDenoiser(*circle_mixture()), student, KarrasSchedule(40),
                               (40, 8, 1), steps_per_phase=1)
    assert not student.built and distiller.inference_student is None  # the mixture has no input shape
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)  # two steps: skip compiling
    distiller.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert student.built and int(to_numpy(distiller.phase)) == 1
    for copy in (distiller.inference_student, distiller.self_teacher, distiller.phase_teacher):
        assert len(copy.weights) == len(student.weights)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    assert_weights_equal(keras.saving.load_model(path).inference_student, distiller.inference_student, rtol=0)
    # The teacher's input shape builds the student at once.
    teacher = keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=8, depth=1))
    teacher(np.zeros((1, 4, 4, 1), "float32"), np.ones((1,), "float32"))
    student = keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=8, depth=1))
    TRACTDistiller(teacher, student, KarrasSchedule(40), steps_per_phase=10)
    assert keras_tract.denoisers.image_shape(student) == (4, 4, 1)
    trainer = keras_tract.EDMTrainer(keras_tract.EDMPrecond(keras_tract.networks.MLPNetwork(hidden=8, depth=1)))
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    trainer.fit(x, batch_size=8, epochs=1, verbose=0)
    assert len(trainer.ema.weights) == len(trainer.denoiser.weights) > 0
    with pytest.raises(ValueError, match="steps_per_phase=0"):
        TRACTDistiller(teacher, student, KarrasSchedule(40), steps_per_phase=0)
