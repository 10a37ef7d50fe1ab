"""Trains a teacher or distills it, as a config says; resumes automatically from the workdir.

With no flags: the offline quick start. TRACT (40 -> 1) distills the bundled digits
teacher on a CPU in minutes, then prints the teacher / naive teacher / student table
and saves `student.keras` and `comparison.png` in the workdir.

Usage:
    KERAS_BACKEND=jax python tools/train.py [--config=configs/digits.py] [--workdir=runs/digits]
        [--stage=distill|teacher] [--teacher=teacher.keras] [--set=distill.lr=2e-4 ...] [--data_parallel]
    tensorboard --logdir=runs/digits/tensorboard

`--data_parallel` splits every batch over all devices: `keras.distribution.DataParallel` on
JAX (several hosts: set KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES and _PROCESS_ID on
each), `tf.distribute.MirroredStrategy` on TensorFlow. The steps equal the single-device ones,
so a run may resume on another number of devices or processes.

On SIGTERM (a scheduler's preemption notice; with several processes, sent to any of them) the run
stops at a step all processes agree on, writes its checkpoint there and exits with status 75
(EX_TEMPFAIL): rerunning the same command resumes exactly. In a multi-process run a process that
fails exits at once with one line naming it; when one dies, the others fail at their next
collective, or at the latest when JAX's distributed runtime misses its heartbeats (100 s).
"""

import contextlib
import os
import sys

import cli
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("config", os.path.join(ROOT, "configs", "digits.py"), "Python config file (configs/*.py).")
flags.DEFINE_multi_string("set", [], "Override one config value: section.key=value (repeatable).")
flags.DEFINE_string("workdir", None, "Run folder (default runs/<config name>); reruns resume from it.")
flags.DEFINE_enum("stage", "distill", ["teacher", "distill"], "Train a teacher (EDM) or distill one.")
flags.DEFINE_string("teacher", None, "A .keras teacher for --stage=distill (default: the workdir's "
                    "teacher.keras, else the config's distill.teacher).")
flags.DEFINE_integer("verbose", 1, "0: quiet, 1: a progress line every run.log_every steps, 2: also Keras' lines.")
flags.DEFINE_bool("data_parallel", False, "Split each batch over every device (JAX or TensorFlow backend).")
FLAGS = flags.FLAGS


def main(_):
    from keras_tract import backend
    from keras_tract import config as config_lib
    from keras_tract.experiment import Run
    from keras_tract.preemption import EXIT_PREEMPTED, Preempted

    workdir = FLAGS.workdir or os.path.join("runs", os.path.splitext(os.path.basename(FLAGS.config))[0])
    with contextlib.ExitStack() as stack:
        if FLAGS.data_parallel:
            stack.enter_context(backend.data_parallel())
        config = config_lib.load(FLAGS.config, FLAGS.set)
        run = Run(config, workdir, FLAGS.stage, FLAGS.teacher, FLAGS.verbose)
        try:
            run(run.build())
        except Preempted as preempted:
            if run.writer:
                print(f"train.py: {preempted}", file=sys.stderr)
            sys.exit(EXIT_PREEMPTED)
        except Exception as error:
            if backend.process_count() == 1:
                raise
            # Exit at once: JAX's exit waits for every process, up to its 100 s heartbeat timeout if one died.
            print(f"train.py: error in process {backend.process_index()} of {backend.process_count()}: "
                  f"{type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
            os._exit(1)


if __name__ == "__main__":
    cli.run(main)
