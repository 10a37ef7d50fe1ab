"""Runs a config's stages: `teacher` (EDM training) and `distill` (TRACT or binary distillation).

A run lives in one workdir: `config.json`, `{stage}_checkpoint.keras` (the whole
trainer with its optimizer and random state, replaced atomically every
`run.checkpoint_every` steps; the one before it is kept as `.previous.keras`),
`distill_identity.json` (the teacher file's SHA-256), TensorBoard logs in
`tensorboard/{stage}`, sample grids in `samples/`, and the results: `teacher.keras`,
or `student.keras` (the inference EMA), `{stage}_metrics.json` and `comparison.png`.
Running the same command again resumes from the checkpoint; the data stream, random
draws and optimizer state continue exactly, so the result equals an uninterrupted
run's. One process at a time holds a workdir (`.lock`).

Several processes (JAX, `keras.distribution` over several hosts) share one workdir on a
shared filesystem: each reads only its share of every global batch, all of them compute,
and process 0 alone holds the lock and writes; the others wait for its checkpoints. On a
preemption notice (SIGTERM) the processes agree on a step, process 0 writes the checkpoint
there and `train` raises `keras_tract.preemption.Preempted` (`keras_tract.preemption`).
"""

import fcntl
import glob
import json
import os
import time

import keras
import numpy as np

from keras_tract import backend, builders
from keras_tract.callbacks import Progress, ScalarLogger, write_scalars
from keras_tract.evaluation import compare_samplers, comparison_image, format_table
from keras_tract.images import atomic_path, grid, save_png, sha256, to_uint8, write_atomic
from keras_tract.preemption import Preempted, Preemption
from keras_tract.solvers import sample
from keras_tract.trainer import check_batch_size, first_batch

STAGES = ("teacher", "distill")


def save_atomic(model, path):
    """`model.save(path)`, atomically (`images.atomic_path`), by this process alone: outside any
    `keras.distribution` (saving makes scratch variables, which across processes would wait for the others)."""
    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        with atomic_path(path) as tmp:
            model.save(tmp)
    finally:
        keras.distribution.set_distribution(distribution)


def check_finite(model, what):
    """Raises FloatingPointError if a float weight of `model` holds NaN or infinity."""
    bad = [w.path for w in model.weights
           if "float" in str(w.dtype) and not np.isfinite(keras.ops.convert_to_numpy(w)).all()]
    if bad:
        raise FloatingPointError(f"Not saving {what}: {len(bad)} of its weights hold NaN or infinity "
                                 f"(first: {bad[0]}); the run diverged.")


def check_workdir(workdir, config):
    """Raises ValueError unless `workdir` is new or holds a run of `config`; only the `evaluate`
    section may differ (a rerun then re-evaluates the finished run)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        stored = json.load(f)
    current = json.loads(json.dumps(config))
    changed = sorted(f"{s}.{k}" for s in set(stored) | set(current) if s != "evaluate"
                     for k in set(stored.get(s, {})) | set(current.get(s, {}))
                     if stored.get(s, {}).get(k) != current.get(s, {}).get(k))
    if changed:
        raise ValueError(f"--workdir={workdir} holds a run with another config (differs in {', '.join(changed)}); "
                         "use a new --workdir or the same config.")


class Run:
    """One stage of a config in a workdir.

    Args:
        config: a validated config (`keras_tract.config.load`).
        workdir: the run's folder.
        stage: `"teacher"` or `"distill"`.
        teacher: path of a `.keras` teacher for `distill`; default the workdir's
            `teacher.keras` if the teacher stage made one, else `distill.teacher`.
        verbose: 0 silent, 1 a progress line every `run.log_every` steps, 2 also Keras' line per chunk.
    """

    def __init__(self, config, workdir, stage="distill", teacher=None, verbose=1):
        if stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, got stage={stage!r}.")
        if os.path.exists(workdir) and not os.path.isdir(workdir):
            raise ValueError(f"--workdir={workdir} is a file, not a folder.")
        self.config, self.workdir, self.stage, self.verbose = config, workdir, stage, verbose
        self.writer = backend.process_index() == 0  # the one process that writes files
        self.batch_size = config["data"]["batch_size"]
        check_batch_size(self.batch_size, config["run"]["micro_batches"], backend.num_replicas())
        self.total_steps = config[stage]["train_len"] // self.batch_size
        self.checkpoint = os.path.join(workdir, f"{stage}_checkpoint.keras")
        if teacher is None and stage == "distill":
            own = os.path.join(workdir, "teacher.keras")
            teacher = own if os.path.isfile(own) else config["distill"]["teacher"]
        self.teacher = self.teacher_path = teacher
        spec = builders.dataset(config).element_spec
        x, labels = spec if isinstance(spec, tuple) else (spec, None)
        self.shape = tuple(x.shape[1:])
        self.num_classes = None if labels is None else int(labels.shape[-1])
        check_workdir(workdir, config)
        self._lock = None
        self.fid = None  # a keras_tract.fid.monitor.FIDMonitor once `fid_monitor()` made one

    # --- building -------------------------------------------------------------

    def build(self):
        """The trainer, resumed from the checkpoint or new, checked against the first batch of data.

        Nothing is written before every check has passed; then the workdir records the config and,
        for distillation, the teacher's SHA-256, which a resumed run must match. The workdir is
        locked for this process; temporary files a killed process left behind are removed.
        """
        self.lock()
        identity = {}
        if self.stage == "distill":
            if not self.teacher:
                raise ValueError("No teacher given: pass --teacher=PATH.keras (the config's distill.teacher is None).")
            self.teacher_path = builders.teacher_file(self.teacher)
            if not os.path.isfile(self.teacher_path):
                raise FileNotFoundError(f"File not found: --teacher={self.teacher_path}")
            identity = {"teacher_sha256": sha256(self.teacher_path)}
            self.check_identity(identity)
        if os.path.isfile(self.checkpoint):
            model = self.load_checkpoint()
        else:
            model = (builders.teacher_trainer(self.config, self.shape, self.num_classes) if self.stage == "teacher"
                     else builders.distiller(self.config, self.teacher_path, self.shape))
        model.check_batch(*first_batch(builders.dataset(self.config)))
        if self.writer:
            text = json.dumps(self.config, indent=2, sort_keys=True)
            write_atomic(os.path.join(self.workdir, "config.json"), text.encode())
            if identity:
                write_atomic(self.identity_path, json.dumps(identity, indent=2).encode())
        return model

    @property
    def identity_path(self):
        return os.path.join(self.workdir, f"{self.stage}_identity.json")

    def check_identity(self, identity):
        """Raises ValueError if the workdir's run was made from another teacher file."""
        if not os.path.isfile(self.identity_path):
            return
        with open(self.identity_path) as f:
            stored = json.load(f)
        if stored != identity:
            raise ValueError(f"--workdir={self.workdir} distills a teacher with SHA-256 "
                             f"{stored.get('teacher_sha256')}, but --teacher={self.teacher_path} has "
                             f"{identity['teacher_sha256']}; pass the same teacher or use a new --workdir.")

    def lock(self):
        """Takes the workdir's lock (a second run on it fails at once) and removes stale temporaries;
        in a multi-process run only process 0, the writer, does."""
        if self._lock is not None or not self.writer:
            return
        os.makedirs(self.workdir, exist_ok=True)
        handle = open(os.path.join(self.workdir, ".lock"), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise ValueError(f"--workdir={self.workdir} is in use by another process.") from None
        self._lock = handle
        for stale in glob.glob(os.path.join(self.workdir, "**", ".tmp-*"), recursive=True):
            os.remove(stale)

    def release(self):
        """Releases the workdir's lock (also released when the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def load_checkpoint(self):
        """The checkpointed trainer; a corrupt file fails in one line that says how to go back one checkpoint."""
        try:
            return builders.load_model_file(self.checkpoint, "checkpoint")
        except ValueError as error:
            previous = self.previous_checkpoint
            hint = (f"move {previous} to {self.checkpoint} to resume from the checkpoint before it"
                    if os.path.isfile(previous) else f"delete {self.checkpoint} to start the stage again")
            raise ValueError(f"{error} The checkpoint is corrupt: {hint}.") from None

    @property
    def previous_checkpoint(self):
        return self.checkpoint.replace(".keras", ".previous.keras")

    # --- training ---------------------------------------------------------------

    def train(self, model):
        """Trains to `total_steps` in chunks of `run.checkpoint_every`, checkpointing after each.

        A preemption notice (SIGTERM) stops at a step all processes agree on, checkpoints there and
        raises `Preempted`."""
        run = self.config["run"]
        every = run["checkpoint_every"]
        done = int(keras.ops.convert_to_numpy(model.step_count))
        if done and self.writer:
            print(f"Resuming {self.stage} from step {done} of {self.total_steps} ({self.checkpoint})")
        start = time.perf_counter()
        if self.stage == "distill" and self.config["evaluate"]["fid_every"]:
            self.fid_monitor()  # says now, once, if FID is off
        with Preemption() as preemption:
            while done < self.total_steps:
                chunk = min(every - done % every, self.total_steps - done)
                model.fit(self.stream(done), initial_epoch=done // every, epochs=done // every + 1,
                          steps_per_epoch=chunk, callbacks=[preemption.callback(done), *self.loggers(done)],
                          verbose=2 if self.verbose > 1 and self.writer else 0)
                if preemption.step is not None:
                    self.save_checkpoint(model)
                    raise Preempted(int(keras.ops.convert_to_numpy(model.step_count)), self.checkpoint)
                done += chunk
                self.save_checkpoint(model)
                self.after_chunk(model, done, chunk)
        return time.perf_counter() - start

    def stream(self, done):
        """The training input from `done` steps on: in a multi-process run, this process's share of it."""
        shard = (backend.process_index(), backend.process_count())
        distribution = keras.distribution.distribution()
        if shard[1] > 1 and distribution is not None:
            distribution.auto_shard_dataset = False  # each process reads its own share
        return builders.dataset(self.config, start=done * self.batch_size, shard=shard)

    def loggers(self, done):
        """The writer's TensorBoard logger and progress line for a `fit()` call after `done` steps."""
        if not self.writer:
            return []
        run = self.config["run"]
        callbacks = [ScalarLogger(os.path.join(self.workdir, "tensorboard", self.stage), run["log_every"],
                                  self.batch_size, done)]
        if self.verbose:
            callbacks.append(Progress(self.stage, self.total_steps, run["log_every"], self.batch_size, done))
        return callbacks

    def save_checkpoint(self, model):
        """The writer replaces the checkpoint (keeping the one before); every process waits until it is written."""
        if self.writer:
            if os.path.isfile(self.checkpoint):
                os.replace(self.checkpoint, self.previous_checkpoint)
            save_atomic(model, self.checkpoint)
        backend.barrier("checkpoint")

    def after_chunk(self, model, done, chunk):
        """Samples and FID when their intervals end within the last `chunk` steps, or at the end."""
        run = self.config["run"]
        if done // run["sample_every"] > (done - chunk) // run["sample_every"] or done == self.total_steps:
            self.save_samples(model, done)
        fid_every = self.config["evaluate"]["fid_every"] if self.stage == "distill" else 0
        if fid_every and ((done * self.batch_size) // fid_every > ((done - chunk) * self.batch_size) // fid_every
                          or done == self.total_steps):
            self.report_fid(model, done)

    @property
    def fid_path(self):
        return os.path.join(self.workdir, "distill_fid.json")

    def fid_monitor(self):
        """The `FIDMonitor` of `evaluate.fid_*`, or None after saying once why FID is off."""
        if self.fid is None:
            from keras_tract.fid.monitor import FIDMonitor

            e = self.config["evaluate"]
            try:
                if not e["fid_ref"]:
                    raise FileNotFoundError("no reference statistics: set evaluate.fid_ref=STATS.npz "
                                            "(tools/fid.py stats, or EDM's fid-refs)")
                self.fid = FIDMonitor(e["fid_ref"], e["fid_samples"], e["steps"], self.shape, self.num_classes,
                                      e["batch_size"], e["seed"])
            except (FileNotFoundError, ValueError) as error:
                if self.writer:
                    print(f"FID during training is off: {' '.join(str(error).split())}")
                self.fid = False
        return self.fid or None

    def report_fid(self, model, step):
        """The student's FIDs now: printed, written to TensorBoard and appended to `distill_fid.json`."""
        monitor = self.fid_monitor()
        if monitor is None:
            return
        values = monitor(model)  # every process computes, one writes
        if not self.writer:
            return
        samples = step * self.batch_size
        print(f"FID at step {step} ({samples} samples, {monitor.num} images): "
              + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
        write_scalars(os.path.join(self.workdir, "tensorboard", self.stage), step, values)
        history = self.fid_history()
        history.append({"step": step, "samples": samples, "images": monitor.num, **values})
        write_atomic(self.fid_path, json.dumps(history, indent=2).encode())

    def fid_history(self):
        """The FIDs reported so far in this workdir (a resumed run continues the list)."""
        if not os.path.isfile(self.fid_path):
            return []
        with open(self.fid_path) as f:
            return json.load(f)

    def _noise(self, num, seed):
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((num,) + self.shape).astype("float32")
        labels = None
        if self.num_classes is not None:
            labels = np.eye(self.num_classes, dtype="float32")[rng.integers(0, self.num_classes, num)]
        return noise, labels

    def save_samples(self, model, step):
        """A grid of `run.num_images` samples with fixed noise: the current student or the teacher's EMA."""
        noise, labels = self._noise(self.config["run"]["num_images"], self.config["run"]["seed"] + 1)
        if self.stage == "distill":
            x = model.generate(noise, labels=labels)
        else:
            x = sample(model.ema, builders.schedule(self.config), noise,
                       solver=self.config["distill"]["teacher_solver"], labels=labels)
        if self.writer:
            save_png(os.path.join(self.workdir, "samples", f"{self.stage}_{step:08d}.png"),
                     grid(to_uint8(keras.ops.convert_to_numpy(x))))

    # --- the whole stage -----------------------------------------------------------

    def __call__(self, model=None):
        """Trains `model` (default `build()`), writes the results; returns the metrics dict."""
        model = self.build() if model is None else model
        seconds = self.train(model)
        metrics = {"stage": self.stage, "steps": self.total_steps, "batch_size": self.batch_size,
                   "train_seconds_this_process": round(seconds, 1),
                   "skipped_steps": int(keras.ops.convert_to_numpy(model.skipped_steps))}
        result = model.ema if self.stage == "teacher" else model.inference_student
        check_finite(result, f"the {self.stage} result")
        if self.stage == "teacher":
            c = self.config["distill"]
            model.ema.sampling = {"schedule": keras.saving.serialize_keras_object(builders.schedule(self.config)),
                                  "solver": c["teacher_solver"], "steps": c["num_steps"]}
            if self.writer:
                save_atomic(model.ema, os.path.join(self.workdir, "teacher.keras"))
                print(f"Saved the teacher (EMA) to {os.path.join(self.workdir, 'teacher.keras')}")
        else:
            if self.writer:
                save_atomic(model.inference_student, os.path.join(self.workdir, "student.keras"))
            metrics["evaluation"], metrics["fd_reference"] = self.evaluate(model)
            if self.config["evaluate"]["fid_every"]:
                metrics["fid"] = self.fid_history()
        if self.writer:
            write_atomic(os.path.join(self.workdir, f"{self.stage}_metrics.json"),
                         json.dumps(metrics, indent=2).encode())
        backend.barrier("results")
        self.release()
        return metrics

    def evaluate(self, distiller):
        """Teacher, naive teacher and student from the same noise; prints the table, saves `comparison.png`."""
        e = self.config["evaluate"]
        noise, labels = self._noise(e["num_samples"], e["seed"])
        reference, label = builders.reference_images(self.config)
        rows, images = compare_samplers(distiller, noise, labels, e["steps"], reference, e["batch_size"])
        if not self.writer:
            return rows, label
        print(format_table(rows, e["num_samples"], label))
        names = [f"{row['sampler']}, {row['nfe']} NFE" for row in rows]
        save_png(os.path.join(self.workdir, "comparison.png"), comparison_image(images, names))
        print(f"Saved the student to {os.path.join(self.workdir, 'student.keras')} and the sample grids "
              f"({', '.join(images)}) side by side to {os.path.join(self.workdir, 'comparison.png')}")
        return rows, label

