"""TRACT and binary time distillation, written once in `keras.ops`
(TRACT, Berthelot et al. 2023, section 3; ml-tract's `tc_distill.py`, `tc_distill_edm.py`, `binary_distill.py`).

The backend adapters (`keras_tract.backend`) supply `train_step`; everything
they call lives here: drawing indices and noise, targets, the student loss and
the state updates after the optimizer step (EMAs, counters, phases).
"""

import math

import keras
import numpy as np
from keras import ops
from keras.saving import register_keras_serializable

from keras_tract import backend
from keras_tract.denoisers import build_denoiser, expand_to, image_shape
from keras_tract.ema import clone, ema_update, freeze, weight_pairs
from keras_tract.losses import edm_errors, snr_trunc_errors
from keras_tract.schedules import Schedule
from keras_tract.solvers import check_solver, ddim_step, heun_step, sample
from keras_tract.targets import invert_ddim, jump_to_group_end
from keras_tract.trainer import Trainer

LOSSES = ("edm", "snr_trunc")


def check_time_schedule(time_schedule, num_steps):
    """Validates `(T_0, ..., T_P)`: starts at `num_steps`, strictly decreasing, each divides the previous."""
    ts = tuple(time_schedule) if isinstance(time_schedule, (list, tuple)) else None
    if (not ts or len(ts) < 2
            or not all(isinstance(t, (int, np.integer)) and t >= 1 for t in ts)):
        raise ValueError(
            f"`time_schedule` must be a sequence of at least two positive integers, "
            f"got time_schedule={time_schedule!r}."
        )
    if ts[0] != num_steps:
        raise ValueError(
            f"`time_schedule` must start at the schedule's num_steps={num_steps}, "
            f"got time_schedule={time_schedule!r}."
        )
    for a, b in zip(ts, ts[1:]):
        if not b < a:
            raise ValueError(f"`time_schedule` must be strictly decreasing, got time_schedule={time_schedule!r}.")
        if a % b:
            raise ValueError(
                f"Each entry of `time_schedule` must divide the previous one ({b} does not divide {a}), "
                f"got time_schedule={time_schedule!r}."
            )
    return tuple(int(t) for t in ts)


def _check_steps_per_phase(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"`steps_per_phase` must be a positive integer, got steps_per_phase={value!r}.")


def _check_momentum(name, value):
    if value is not None and not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {name}={value!r}.")


class Distiller(Trainer):
    """Machinery shared by `TRACTDistiller` and `BinaryDistiller`.

    Each optimizer step draws, per sample, a group `g` (student step `hi = g * delta
    -> lo = hi - delta`) and an offset `k` inside it, starts at level
    `i0 = hi - k * semi`, takes one teacher step to `i1 = i0 - semi` and a second
    step to `i2 = lo`, and trains the student so that one DDIM step `i0 -> i2`
    lands on that endpoint. Subclasses define the offsets and the second step.
    """

    second_step_clip = True

    def __init__(self, teacher, student, schedule, time_schedule, teacher_solver, clip_teacher,
                 inference_momentum, steps_per_phase, loss, reset_inference_ema_on_phase, seed,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(schedule, Schedule):
            raise ValueError(f"`schedule` must be a keras_tract Schedule, got schedule={schedule!r}.")
        check_solver(teacher_solver)
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got loss={loss!r}.")
        _check_steps_per_phase(steps_per_phase)
        self.schedule = schedule
        self.time_schedule = check_time_schedule(time_schedule, schedule.num_steps)
        self.num_phases = len(self.time_schedule) - 1
        if self.num_phases > 1 and steps_per_phase is None:
            raise ValueError(
                f"`steps_per_phase` is required for the multi-phase time_schedule={self.time_schedule}."
            )
        self.teacher_solver, self.loss = teacher_solver, loss
        self.clip_teacher = (teacher_solver == "ddim") if clip_teacher is None else bool(clip_teacher)
        self.inference_momentum = float(inference_momentum)
        self.steps_per_phase = None if steps_per_phase is None else int(steps_per_phase)
        self.reset_inference_ema_on_phase = bool(reset_inference_ema_on_phase)

        self.teacher = freeze(teacher)
        self.student = student
        self.inference_student = self.self_teacher = self.phase_teacher = None
        shape = image_shape(student) or image_shape(teacher)
        if shape is not None:
            self.build_student(shape)
        self.phase = self.add_counter("phase")
        self.inference_count = self.add_counter("inference_count")
        self.self_teacher_count = self.add_counter("self_teacher_count") if self.uses_self_teacher else None

        n, ts = schedule.num_steps, self.time_schedule
        self._semi = np.array([n // t for t in ts[:-1]], "int32")
        self._delta = np.array([n // t for t in ts[1:]], "int32")
        self._offsets = np.array([self.num_offsets(a // b) for a, b in zip(ts[:-1], ts[1:])], "int32")
        self.built = True

    uses_self_teacher = True

    def build_student(self, shape, labels=None):
        """Builds the student for per-example `shape` (as Keras models build on their first batch)
        and makes its copies: the inference EMA, the self-teacher, the phase teacher."""
        if self.inference_student is not None:
            return
        build_denoiser(self.student, shape, labels)
        # The copies compute in float32 whatever the student's policy: targets and samples stay float32.
        self.inference_student = clone(self.student, "inference_student", dtype_policy="float32")
        self.inference_student.sampling = {"schedule": keras.saving.serialize_keras_object(self.schedule),
                                           "solver": "ddim", "steps": self.time_schedule[-1]}
        if self.uses_self_teacher:
            self.self_teacher = clone(self.student, "self_teacher", dtype_policy="float32")
        if self.num_phases > 1:
            self.phase_teacher = clone(self.student, "phase_teacher", dtype_policy="float32")

    def num_offsets(self, group_size):
        """How many start levels a group of `group_size` teacher steps offers."""
        return group_size

    # --- One step of distillation ------------------------------------------------

    def draw(self, shape):
        """Per-sample noise of `shape` `(B, ...)`, group `g` in `[1, groups]` and offset `k` in `[0, S)`."""
        batch = shape[0]
        phase = self.current_phase()
        groups = ops.take(backend.constant(self.time_schedule[1:], "int32"), phase)
        offsets = ops.take(backend.constant(self._offsets, "int32"), phase)
        u = keras.random.uniform((2, batch), seed=self.seed_generator)
        group = 1 + ops.minimum(ops.cast(u[0] * ops.cast(groups, "float32"), "int32"), groups - 1)
        offset = ops.minimum(ops.cast(u[1] * ops.cast(offsets, "float32"), "int32"), offsets - 1)
        noise = keras.random.normal(shape, seed=self.seed_generator)
        return noise, group, offset

    def levels(self, group, offset):
        """Grid indices `(i0, i1, i2)` of the start, the teacher step's end and the group's end."""
        phase = self.current_phase()
        semi = ops.take(backend.constant(self._semi, "int32"), phase)
        delta = ops.take(backend.constant(self._delta, "int32"), phase)
        group, offset = ops.convert_to_tensor(group, "int32"), ops.convert_to_tensor(offset, "int32")
        i0 = delta * group - semi * offset
        return i0, i0 - semi, delta * (group - 1)

    def current_phase(self, phase=None):
        """`phase` (default the current one), an int32 scalar tensor, held at the last phase after the end."""
        return ops.minimum(self.phase.value if phase is None else phase,
                           backend.constant(self.num_phases - 1, "int32"))

    def teacher_step(self, x, s0, s1, labels):
        """The phase's teacher from `s0` to `s1`: the given teacher, then the previous phase's student."""

        def original():
            step = heun_step if self.teacher_solver == "heun" else ddim_step
            return step(self.teacher, x, s0, s1, labels, self.clip_teacher)

        if self.phase_teacher is None:
            return original()
        refreshed = lambda: ddim_step(self.phase_teacher, x, s0, s1, labels, self.second_step_clip)  # noqa: E731
        return ops.cond(ops.equal(self.phase.value, backend.constant(0, "int32")), original, refreshed)

    def second_step(self, x1, s1, s2, at_end, labels):
        raise NotImplementedError

    def distillation_targets(self, x, noise, group, offset, labels=None):
        """Returns `(x_t, sigma, target)`: the noisy input at `i0`, its level `(B,)` and the x0 target."""
        i0, i1, i2 = self.levels(group, offset)
        sigmas = backend.constant(self.schedule.sigmas, "float32")
        s0, s1, s2 = ops.take(sigmas, i0), ops.take(sigmas, i1), ops.take(sigmas, i2)
        x = ops.cast(x, "float32")
        x_t = x + expand_to(s0, x) * ops.cast(noise, "float32")
        x1 = self.teacher_step(x_t, s0, s1, labels)
        x2 = self.second_step(x1, s1, s2, ops.equal(i1, i2), labels)
        return x_t, s0, ops.stop_gradient(invert_ddim(x_t, x2, s0, s2))

    def prepare_step(self, x, labels, draws):
        return self.distillation_targets(x, *draws, labels)

    def step_loss(self, prepared, labels=None):
        return self.student_loss(*prepared, labels)

    def student_loss(self, x_t, sigma, target, labels=None):
        """`"edm"`: EDM-weighted MSE, the mean over elements (F-space MSE for `EDMPrecond`).
        `"snr_trunc"`: `max(SNR, 1)`-weighted squared error summed over elements; mean over the batch."""
        if self.loss == "edm":
            return ops.mean(edm_errors(self.student, x_t, sigma, target, labels))
        return ops.mean(ops.sum(snr_trunc_errors(self.student, x_t, sigma, target, labels), axis=1))

    def end_step(self, finite, loss):
        """State updates after the optimizer step; `finite` False means the step was skipped."""
        pairs = lambda role, source: self.per_fit(role, lambda: weight_pairs(getattr(self, role), source))  # noqa: E731
        if self.self_teacher is not None:
            ema_update(self.self_teacher, self.student, self.self_teacher_momentum,
                       self.self_teacher_count, finite, pairs("self_teacher", self.student))
        ema_update(self.inference_student, self.student, self.inference_momentum,
                   self.inference_count, finite, pairs("inference_student", self.student))
        logs = self.record_step(finite, loss)
        step = self.step_count.value
        if self.phase_teacher is not None:
            phase = self.current_phase(step // self.steps_per_phase)
            changed = ops.not_equal(phase, self.phase.value)
            floats, others = pairs("phase_teacher", self.inference_student)
            for dst, src in floats + others:
                dst.assign(ops.where(changed, src.value, dst.value))
            if self.reset_inference_ema_on_phase:
                self.inference_count.assign(ops.where(changed, ops.zeros_like(self.inference_count.value),
                                                      self.inference_count.value))
            self.phase.assign(phase)
        return {**logs, "phase": ops.copy(self.phase.value)}

    # --- fit, sampling, saving ---------------------------------------------------

    def check_batch(self, x, labels):
        """Checks the first batch: float data in [-1, 1] that teacher and student map to its shape.
        An unbuilt student is built for it."""
        super().check_batch(x, labels)
        self.build_student(x.shape[1:], labels)
        x1 = x[:1].astype("float32")
        args = (x1, np.ones((1,), "float32")) + (() if labels is None else (labels[:1],))
        shapes = {}
        for role in ("teacher", "student"):
            try:
                model = getattr(self, role)
                if hasattr(model, "check_labels"):
                    model.check_labels(args[2] if len(args) > 2 else None)
                shapes[role] = tuple(model(*args).shape)[1:]
            except Exception as error:  # report which model does not fit the data
                raise ValueError(f"The {role} cannot denoise the data (shape {x1.shape[1:]}"
                                 f"{'' if labels is None else f', labels {labels.shape[1:]}'}): {error}") from None
        if not shapes["teacher"] == shapes["student"] == x1.shape[1:]:
            raise ValueError(
                f"Teacher and student must map data of shape {x1.shape[1:]} to the same shape, "
                f"got teacher output {shapes['teacher']} and student output {shapes['student']}."
            )

    def current_steps(self):
        """The student step count of the current phase."""
        return self.time_schedule[min(int(ops.convert_to_numpy(self.phase)), self.num_phases - 1) + 1]

    def generate(self, noise, steps=None, labels=None):
        """Samples with the inference EMA: DDIM with clipping from `sigma_max * noise`.

        Args:
            noise: `(B, ...)` standard-normal noise. steps: student steps, default
                the current phase's. labels: optional `(B, num_classes)` one-hot.
        """
        steps = self.current_steps() if steps is None else steps
        return sample(self.inference_student, self.schedule, noise, steps=steps, solver="ddim",
                      labels=labels, clip_denoised=True)

    def get_config(self):
        return {
            **super().get_config(),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "time_schedule": list(self.time_schedule),
            "teacher_solver": self.teacher_solver,
            "clip_teacher": self.clip_teacher,
            "inference_momentum": self.inference_momentum,
            "steps_per_phase": self.steps_per_phase,
            "loss": self.loss,
            "reset_inference_ema_on_phase": self.reset_inference_ema_on_phase,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("teacher", "student", "schedule"):
            config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
        return cls(**config)


@register_keras_serializable(package="keras_tract")
class TRACTDistiller(Distiller):
    """Transitive Closure Time-Distillation (Berthelot et al. 2023).

    A time schedule `(T_0, ..., T_P)` defines P phases; phase p distills a
    `T_p`-step teacher into a `T_{p+1}`-step student. Each target is one teacher
    step followed by a self-teacher (an EMA of the student) jump to the end of
    the sample's group. At each phase boundary the teacher becomes a copy of the
    inference EMA, which then samples with clipped DDIM steps.

    Args:
        teacher: a VE denoiser (`EDMPrecond`, `VPDenoiser`, `GaussianMixtureDenoiser`, ...).
        student: a trainable VE denoiser with the teacher's output shape, usually
            a copy of the teacher. If it is not built, it is built for the input
            shape of its network or of the teacher, else on the first batch of
            `fit()`. Under a `mixed_bfloat16` policy only the student's training
            pass runs in bfloat16: the EMA copies (self-teacher, inference
            student) compute in float32, like a float32 teacher.
        schedule: the teacher's `Schedule`.
        time_schedule: `(T_0, ..., T_P)`, `T_0 = schedule.num_steps`, strictly
            decreasing, each dividing the previous.
        teacher_solver: `"heun"` (EDM teachers, unclipped) or `"ddim"` (cosine
            teachers, clipped as in the official VP code).
        self_teacher_momentum: mu_S of the self-teacher EMA.
        ema_residual: sets mu_I = ema_residual ** (1 / steps_per_phase).
        steps_per_phase: optimizer steps per phase (`train_len / (batch * P)`).
        inference_momentum: mu_I given directly instead of `ema_residual`.
        loss: `"edm"` (F-space MSE) or `"snr_trunc"` (max(SNR, 1) weighted,
            summed over elements).
        reset_inference_ema_on_phase: restart the inference EMA at each boundary.
        clip_teacher: override the clipping of the given teacher's steps.
        seed: int, seeds the per-step draws of levels and noise.
        micro_batches: int, run each batch in this many equal parts and apply
            their mean gradient once (the same step; less memory).

    Example:
    >>> angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    >>> means = 0.7 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    >>> teacher = GaussianMixtureDenoiser(means, np.full(8, 0.05), np.ones(8))  # an exact teacher
    >>> student = EDMPrecond(keras_tract.networks.MLPNetwork(hidden=64))       # built on the first batch
    >>> distiller = TRACTDistiller(teacher, student, KarrasSchedule(40), (40, 1), steps_per_phase=20)
    >>> distiller.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8))
    >>> data = (means[np.arange(256) % 8] + 0.05 * np.random.randn(256, 2)).astype("float32")
    >>> history = distiller.fit(data, batch_size=64, epochs=5, verbose=0)
    >>> tuple(distiller.generate(np.random.randn(16, 2), steps=1).shape)
    (16, 2)
    """

    def __init__(self, teacher, student, schedule, time_schedule=(40, 1), teacher_solver="heun",
                 self_teacher_momentum=0.5, ema_residual=1e-3, steps_per_phase=None,
                 inference_momentum=None, loss="edm", reset_inference_ema_on_phase=False,
                 clip_teacher=None, seed=0, **kwargs):
        _check_momentum("self_teacher_momentum", self_teacher_momentum)
        _check_momentum("inference_momentum", inference_momentum)
        _check_steps_per_phase(steps_per_phase)
        if inference_momentum is None:
            if not 0.0 < ema_residual < 1.0:
                raise ValueError(f"`ema_residual` must be in (0, 1), got ema_residual={ema_residual!r}.")
            if steps_per_phase is None:
                raise ValueError("`steps_per_phase` (or `inference_momentum`) is required to set mu_I.")
            inference_momentum = math.exp(math.log(ema_residual) / steps_per_phase)
        super().__init__(teacher, student, schedule, time_schedule, teacher_solver, clip_teacher,
                         inference_momentum, steps_per_phase, loss, reset_inference_ema_on_phase,
                         seed, **kwargs)
        self.self_teacher_momentum = float(self_teacher_momentum)
        self.ema_residual = ema_residual

    def second_step(self, x1, s1, s2, at_end, labels):
        return jump_to_group_end(self.self_teacher, x1, s1, s2, at_end, labels, clip_denoised=True)

    def get_config(self):
        return {**super().get_config(), "self_teacher_momentum": self.self_teacher_momentum,
                "ema_residual": self.ema_residual}


@register_keras_serializable(package="keras_tract")
class BinaryDistiller(Distiller):
    """Binary time distillation (progressive distillation, Salimans & Ho 2022), TRACT's baseline.

    Every phase halves the step count: `time_schedule` must be `(T, T/2, ..., )`.
    The target of a student step is two unclipped teacher steps (ml-tract's `binary_distill.py`);
    there is no self-teacher. The inference EMA has a fixed momentum.

    Args:
        teacher, student, schedule, teacher_solver, steps_per_phase, loss,
        reset_inference_ema_on_phase, seed, micro_batches: as in `TRACTDistiller`.
        time_schedule: halving sequence from `schedule.num_steps`; default
            halves down to 1 (`num_steps` must then be a power of two).
        inference_momentum: mu_I, default 0.9995 (the official default).
    """

    uses_self_teacher = False
    second_step_clip = False

    def __init__(self, teacher, student, schedule, time_schedule=None, teacher_solver="ddim",
                 steps_per_phase=None, inference_momentum=0.9995, loss="snr_trunc",
                 reset_inference_ema_on_phase=False, clip_teacher=False, seed=0, **kwargs):
        _check_momentum("inference_momentum", inference_momentum)
        if time_schedule is None:
            n = schedule.num_steps
            time_schedule = [n >> p for p in range(n.bit_length()) if n >> p]
        ts = tuple(time_schedule)
        if any(a != 2 * b for a, b in zip(ts, ts[1:])):
            raise ValueError(f"`time_schedule` must halve at every phase, got time_schedule={time_schedule!r}.")
        super().__init__(teacher, student, schedule, ts, teacher_solver, clip_teacher,
                         inference_momentum, steps_per_phase, loss, reset_inference_ema_on_phase,
                         seed, **kwargs)

    def num_offsets(self, group_size):
        return 1

    def second_step(self, x1, s1, s2, at_end, labels):
        return self.teacher_step(x1, s1, s2, labels)


METHODS = {"tract": TRACTDistiller, "binary": BinaryDistiller}


def student_from(teacher, dtype_policy=None):
    """A trainable copy of `teacher` (its weights, dropout 0: ml-tract's students train without
    dropout), computing under `dtype_policy` (default the teacher's). TRACT starts the student here."""
    config = teacher.get_config()
    network = config.get("network")
    if isinstance(network, dict) and "dropout" in network.get("config", {}):
        network["config"]["dropout"] = 0.0
    student = clone(teacher, "student", config, dtype_policy)
    student.trainable = True
    return student
