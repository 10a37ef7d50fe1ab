"""Two JAX processes x two CPU devices on localhost against one process, with a preemption between.

Run as `python tests/helpers/multihost.py` (it sets KERAS_BACKEND=jax for its processes); used by
test_multihost.py. It distills a random MLP teacher three ways, each process of each run bounded
in time and killed, with its whole process group, however the script ends:
1. one process, one device, uninterrupted: the reference;
2. two processes (`KERAS_DISTRIBUTION_*`, a free port) x two devices, `--data_parallel`, and a
   SIGTERM to process 1 only once the first checkpoint exists: both must stop at the step they
   agree on and exit with status 75;
3. the same two processes again, resuming to the end, and beside them one process resuming a copy
   of the same workdir (another process count).
Prints one JSON line: exit statuses, the preempted step, the largest weight differences between
the students of (3) and (1), and the files each workdir holds.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "tools", "train.py")
STEPS, EVERY = 48, 8
SETTINGS = ["data.batch_size=16", f"distill.train_len={16 * STEPS}", "distill.num_steps=8",
            "distill.time_schedule=[8, 2, 1]", f"run.checkpoint_every={EVERY}", f"run.sample_every={STEPS}",
            "run.log_every=4", "run.num_images=4", "evaluate.num_samples=16", "evaluate.batch_size=16"]
LIMIT = 400  # seconds any one process may run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launch:
    """`processes` train.py processes on one workdir, each in its own process group, logs in the workdir's parent."""

    def __init__(self, workdir, teacher, processes, tag):
        # A compilation cache shared by the runs: a resumed run loads what its first run compiled.
        env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
               "JAX_COMPILATION_CACHE_DIR": os.path.join(os.path.dirname(workdir), "jax_cache"),
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        args = [sys.executable, TRAIN, f"--workdir={workdir}", f"--teacher={teacher}",
                *[f"--set={s}" for s in SETTINGS]]
        if processes > 1:
            env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2",
                       KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{free_port()}",
                       KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes))
            args.append("--data_parallel")
        self.logs = [f"{workdir}.{tag}.{i}.log" for i in range(processes)]
        self.procs = []
        for i, log in enumerate(self.logs):
            with open(log, "w") as out:
                self.procs.append(subprocess.Popen(args, env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(i)},
                                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        self.deadline = time.time() + LIMIT

    def wait(self):
        """Exit statuses (None: killed at the time limit)."""
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(self.deadline - time.time(), 0.1)))
            except subprocess.TimeoutExpired:
                codes.append(None)
        self.kill()
        return codes

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def output(self):
        return [open(log).read() for log in self.logs]


def files(workdir):
    found = []
    for root, _, names in os.walk(workdir):
        for name in names:
            path = os.path.relpath(os.path.join(root, name), workdir)
            found.append(os.path.join(os.path.dirname(path), "events") if "tfevents" in name else path)
    return sorted(found)


def student(workdir):
    import keras

    return keras.saving.load_model(os.path.join(workdir, "student.keras"), compile=False).get_weights()


def main():
    os.environ["KERAS_BACKEND"] = "jax"
    import keras
    import numpy as np

    import keras_tract

    launches, report = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            teacher = os.path.join(tmp, "teacher.keras")
            keras.utils.set_random_seed(0)
            model = keras_tract.EDMPrecond(keras_tract.networks.get("mlp_small"))
            model(np.zeros((1, 8, 8, 1), "float32"), np.ones((1,), "float32"))
            model.save(teacher)

            single, multi = os.path.join(tmp, "single"), os.path.join(tmp, "multi")
            launches.append(Launch(single, teacher, 1, "run"))
            launches.append(Launch(multi, teacher, 2, "preempted"))
            checkpoint = os.path.join(multi, "distill_checkpoint.keras")
            while (not os.path.exists(checkpoint) and launches[-1].procs[1].poll() is None
                   and time.time() < launches[-1].deadline):
                time.sleep(0.02)
            launches[-1].procs[1].send_signal(signal.SIGTERM)
            report["preempted_codes"] = launches[-1].wait()
            preempted = launches[-1].output()
            report["preempted_at"] = [line for line in preempted[0].splitlines() if "Preempted at step" in line]
            report["files_after_preemption"] = files(multi)
            on_one = os.path.join(tmp, "on_one")
            shutil.copytree(multi, on_one)
            launches.append(Launch(on_one, teacher, 1, "resumed"))
            launches.append(Launch(multi, teacher, 2, "resumed"))
            report["resumed_codes"] = launches[-1].wait()
            report["on_one_code"] = launches[-2].wait()[0]
            report["single_code"] = launches[0].wait()[0]
            resumed = launches[-1].output()
            report["on_one_resumed"] = [line for line in launches[-2].output()[0].splitlines()
                                        if line.startswith("Resuming")]
            report["resumed_lines"] = [line for line in resumed[0].splitlines() if line.startswith("Resuming")]
            report["process_1_output"] = [line for line in preempted[1].splitlines() + resumed[1].splitlines()
                                          if line.startswith(("distill step", "Resuming", "Saved", "train.py"))]
            report["files"] = {"single": files(single), "multi": files(multi)}
            report["max_weight_difference"] = {
                name: max(float(np.abs(a - b).max()) for a, b in zip(student(single), student(other), strict=True))
                for name, other in (("multi", multi), ("on_one", on_one))}
        except Exception as error:  # the logs say why
            report["error"] = repr(error)
            report["logs"] = {os.path.basename(log): text[-3000:] for launch in launches
                              for log, text in zip(launch.logs, launch.output())}
        finally:
            for launch in launches:
                launch.kill()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
