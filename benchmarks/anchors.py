"""keras-tract against the official TRACT-EDM code on the same network, every backend in one run.

The network is EDM's `SongUNet` in its DDPM++ form (by default model_channels 32, channel_mult [1, 2, 2],
2 blocks, attention at 16x16; 1,754,147 parameters; `--network=cifar10` for EDM's CIFAR-10 network) on
32x32x3 images; the step is TRACT-EDM's: a (40, 1) time schedule, a Heun teacher, the self-teacher, the
student's forward and backward, Adam and both EMAs.
For each backend it prints ms per training step, ms per forward (a 1-step sample: one network
evaluation, compiled as the step is: XLA, a TensorFlow graph or eager PyTorch), the step in forwards,
and the ratios to the official code, which runs in the same process, taking turns with keras-tract step
by step and call by call (so a drift of the machine's speed, tens of percent within minutes on a shared
machine, hits both alike).

The official code cannot ship with keras-tract: it is run from checkouts you point to,
EDM's network (`training/networks.py` in github.com/NVlabs/edm) and ml-tract's `train_op`
(`tc_distill_edm.py` in github.com/apple/ml-tract, whose `lib.optim.ModuleEMA` gives the EMAs), on
PyTorch. Without `--edm` and `--ml_tract` only keras-tract is measured.

Usage:
    python benchmarks/anchors.py --edm=/path/to/edm --ml_tract=/path/to/ml-tract
    python benchmarks/anchors.py --backends=torch --batch=16 --steps=5
    python benchmarks/anchors.py --edm=... --ml_tract=... --network=cifar10 --batch=128   # on a GPU

On a machine with a CUDA GPU both run there (PyTorch's default device; JAX and TensorFlow as Keras
places them) and each timed call waits for the device. Each backend runs in its own process, one after
another; run it on a quiet machine. With `--rounds=R` every backend is measured R times and the table
shows medians: of the milliseconds, and of each round's ratios (a ratio only compares numbers measured in
turn, in one process).
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types

from absl import app, flags

NETWORKS = {  # SongUNet in its DDPM++ form, dropout off
    "small": dict(model_channels=32, channel_mult=[1, 2, 2], num_blocks=2, attn_resolutions=[16], dropout=0.0),
    "cifar10": dict(model_channels=128, channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16], dropout=0.0),
}
flags.DEFINE_list("backends", ["torch", "jax", "tensorflow"], "keras-tract backends to measure.")
flags.DEFINE_string("edm", None, "A checkout of github.com/NVlabs/edm (the official network).")
flags.DEFINE_string("ml_tract", None, "A checkout of github.com/apple/ml-tract (the official TRACT-EDM step).")
flags.DEFINE_enum("network", "small", list(NETWORKS), "small: the network above (1.75M parameters); cifar10: "
                  "EDM's CIFAR-10 DDPM++ network (model_channels 128, channel_mult [2, 2, 2], 4 blocks).")
flags.DEFINE_integer("batch", 16, "Batch size.", lower_bound=1)
flags.DEFINE_integer("steps", 5, "Timed steps and forwards (medians) after two warm-up calls.", lower_bound=1)
flags.DEFINE_integer("rounds", 1, "Rounds over the backends; the table shows medians (ratios: of each round's).",
                     lower_bound=1)
flags.DEFINE_integer("threads", None, "PyTorch intra-op threads (default: PyTorch's).", lower_bound=1)
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "keras-tract's step compilation (`compile(jit_compile=...)`); Keras' auto is XLA on JAX, on "
                  "TensorFlow with a GPU (a plain graph on CPUs), eager on PyTorch. The forward runs the same way.")
flags.DEFINE_string("measure", None, "Internal: measure this backend in this process.")
FLAGS = flags.FLAGS

NUM_STEPS, RESOLUTION = 40, 32
MODES = {"torch": ("eager", "torch.compile")}  # how each backend runs without / with jit_compile


def interleaved(fns, repeats):
    """Median milliseconds per call of each of `fns`, called in turn `repeats` times after two warm-up calls.

    Taking turns call by call keeps the ratios honest on a machine whose speed drifts.
    """
    times = [[] for _ in fns]
    for i in range(repeats + 2):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            if i >= 2:
                t.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def official_model(edm, ml_tract, batch):
    """ml-tract's `EluDDIM05TCMultiStepx0` around EDM's network, without its data, download and
    distributed set-up: `lib` is replaced by the few names `tc_distill_edm.py` uses, and the model's
    attributes are those its `__init__` sets (teacher, self-teacher and inference EMAs, Adam, sigmas)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    sys.path[:0] = [edm]
    lib = types.ModuleType("lib")
    lib.optim = _load("lib.optim", os.path.join(ml_tract, "lib", "optim.py"))
    lib.train = types.SimpleNamespace(TrainModel=torch.nn.Module, TrainInfo=object)
    lib.distributed = types.SimpleNamespace(device=lambda: device, device_id=lambda: device, barrier=lambda: None,
                                            auto_distribute=lambda f: f)
    lib.util = types.SimpleNamespace(FLAGS=None, int_str=int)
    sys.modules.update({"lib": lib, "lib.distributed": lib.distributed, "lib.util": lib.util})
    tc = _load("tc_distill_edm", os.path.join(ml_tract, "tc_distill_edm.py"))
    from training.networks import EDMPrecond

    cls = tc.EluDDIM05TCMultiStepx0
    m = cls.__new__(cls)
    torch.nn.Module.__init__(m)
    network = NETWORKS[FLAGS.network]
    net = EDMPrecond(img_resolution=RESOLUTION, img_channels=3, model_type="SongUNet", **network).to(device)
    net.train().requires_grad_(True)
    ema = 1e-3 ** (1 / 1000)
    m.model = net
    m.model_eval = lib.optim.ModuleEMA(net, momentum=ema).eval().requires_grad_(False)
    m.self_teacher = lib.optim.ModuleEMA(net, momentum=0.5).eval().requires_grad_(False)
    m.teacher = tc.copy.deepcopy(net).eval().requires_grad_(False)
    m.opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=0.0)
    sigma = torch.linspace(cls.SIGMA_MIN ** (1 / cls.RHO), cls.SIGMA_MAX ** (1 / cls.RHO), NUM_STEPS,
                           dtype=torch.double).pow(cls.RHO)
    m.register_buffer("sigma", torch.cat([torch.zeros_like(sigma[:1]), sigma]).to(device))
    m.timesteps, m.time_schedule, m.num_classes, m.use_imagenet, m.COLORS = NUM_STEPS, (NUM_STEPS, 1), 10, False, 3
    m.params = types.SimpleNamespace(lr_warmup=None, res=RESOLUTION)
    x = torch.rand(batch, 3, RESOLUTION, RESOLUTION, device=device) * 2 - 1

    def step():
        m.train_op(None, x, None)
        sync()

    def forward():
        with torch.no_grad():
            m.forward(batch)
        sync()

    return step, forward, sum(p.numel() for p in net.parameters())


def ours(batch, between):
    """keras-tract's `(step, forward, parameters)` for the backend of this process; `between()` runs after
    every timed training step (the official step, measured in turn), outside the step's time."""
    import keras
    import numpy as np

    import keras_tract as kt
    from keras_tract.ema import clone

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch * (FLAGS.steps + 2), RESOLUTION, RESOLUTION, 3)).astype("float32")
    teacher = kt.EDMPrecond(kt.networks.SongUNet(**NETWORKS[FLAGS.network]))
    teacher(x[:1], np.ones((1,), "float32"))
    schedule = kt.KarrasSchedule(NUM_STEPS)
    student = clone(teacher, "student")
    student.trainable = True
    distiller = kt.TRACTDistiller(teacher, student, schedule, (NUM_STEPS, 1), steps_per_phase=1000)
    jit = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile]
    distiller.compile(optimizer=keras.optimizers.Adam(1e-4, epsilon=1e-8), jit_compile=jit)
    step_ms = []

    class Turns(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            keras.ops.convert_to_numpy(logs["loss"])  # waits for an asynchronous step
            step_ms.append((time.perf_counter() - self.start) * 1e3)
            between()

    distiller.fit(x, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[Turns()])
    noise = rng.standard_normal((batch, RESOLUTION, RESOLUTION, 3)).astype("float32")
    forward = lambda: keras.ops.convert_to_numpy(kt.sample(  # noqa: E731
        distiller.inference_student, schedule, noise, steps=1, solver="ddim", jit_compile=distiller.jit_compile))
    return statistics.median(step_ms[2:]), forward, teacher.count_params(), bool(distiller.jit_compile)


def device_name():
    """The accelerator keras-tract runs on in this process, or "CPU"."""
    import keras

    if keras.config.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return "CPU" if device.platform == "cpu" else device.device_kind
    if keras.config.backend() == "torch":
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"


def measure(what):
    """Numbers of one backend, and of the official code measured in turn with it, as a JSON line on stdout."""
    import keras

    if FLAGS.threads:
        import torch

        torch.set_num_threads(FLAGS.threads)
    official = official_model(FLAGS.edm, FLAGS.ml_tract, FLAGS.batch) if FLAGS.edm else None
    official_steps = []

    def between():
        if official:
            start = time.perf_counter()
            official[0]()
            official_steps.append((time.perf_counter() - start) * 1e3)

    step, forward, params, jit_compile = ours(FLAGS.batch, between)
    result = dict(step=step, params=params, keras=keras.__version__, jit_compile=jit_compile, device=device_name())
    if official:
        result["forward"], result["official_forward"] = interleaved([forward, official[1]], FLAGS.steps)
        result.update(official_step=statistics.median(official_steps[2:]), official_params=official[2])
    else:
        result["forward"] = interleaved([forward], FLAGS.steps)[0]
    print("RESULT " + json.dumps(result))


def run(backend):
    args = [sys.executable, os.path.abspath(__file__), f"--measure={backend}", f"--batch={FLAGS.batch}",
            f"--steps={FLAGS.steps}", f"--network={FLAGS.network}", f"--jit_compile={FLAGS.jit_compile}"]
    args += [f"--{k}={getattr(FLAGS, k)}" for k in ("edm", "ml_tract", "threads") if getattr(FLAGS, k)]
    proc = subprocess.run(args, env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"measuring {backend} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(_):
    if FLAGS.measure:
        return measure(FLAGS.measure)
    if bool(FLAGS.edm) != bool(FLAGS.ml_tract):
        sys.exit(f"Give both --edm and --ml_tract (or neither), got edm={FLAGS.edm!r}, ml_tract={FLAGS.ml_tract!r}.")
    for name, path, inner in (("edm", FLAGS.edm, "training/networks.py"),
                              ("ml_tract", FLAGS.ml_tract, "tc_distill_edm.py")):
        if path and not os.path.isfile(os.path.join(path, inner)):
            sys.exit(f"--{name}={path!r} has no {inner}: point it to a checkout of the repository.")
    print(f"batch {FLAGS.batch}, {RESOLUTION}x{RESOLUTION}x3, SongUNet {NETWORKS[FLAGS.network]}, "
          f"({NUM_STEPS}, 1) Heun teacher; median of {FLAGS.steps} calls; {os.cpu_count()} CPUs")
    rounds = {name: [] for name in FLAGS.backends}
    for i in range(FLAGS.rounds):
        for name in FLAGS.backends:
            rounds[name].append(run(name))
            print(f"  round {i + 1} {name}: {json.dumps(rounds[name][-1])}", flush=True)
    keys = ("step", "forward", "official_step", "official_forward") if FLAGS.edm else ("step", "forward")
    results = {name: {**r[0], **{k: statistics.median([x[k] for x in r]) for k in keys}}
               for name, r in rounds.items()}
    label = lambda name, r: f"keras-tract {name} ({MODES.get(name, ('graph', 'XLA'))[r['jit_compile']]})"  # noqa: E731
    head = f"\n{'':<32} {'step ms':>9} {'forward ms':>11} {'step/forward':>13}"
    if not FLAGS.edm:
        print(head)
        for name, r in results.items():
            ratio = r["step"] / r["forward"]
            print(f"{label(name, r):<32} {r['step']:>9.1f} {r['forward']:>11.1f} {ratio:>13.2f}")
        return
    print(head + f" {'step vs official':>17} {'forward vs official':>20} {'step/fwd vs official':>21}")
    # A ratio compares numbers measured in turn, so each comes from one round (the median over rounds).
    ratio = lambda name, f: statistics.median(f(x) for x in rounds[name])  # noqa: E731
    for name, r in results.items():
        step, forward = ratio(name, lambda x: x["step"] / x["official_step"]), ratio(
            name, lambda x: x["forward"] / x["official_forward"])
        in_forwards = ratio(name, lambda x: x["step"] / x["forward"] / (x["official_step"] / x["official_forward"]))
        print(f"{label(name, r):<32} {r['step']:>9.1f} {r['forward']:>11.1f} {r['step'] / r['forward']:>13.2f}"
              f" {step:>17.2f} {forward:>20.2f} {in_forwards:>21.2f}")
        print(f"{'  official, in turn':<32} {r['official_step']:>9.1f} {r['official_forward']:>11.1f}"
              f" {r['official_step'] / r['official_forward']:>13.2f}")
    print(f"parameters: keras-tract {r['params']:,}, official {r['official_params']:,}; devices: "
          + ", ".join(f"{name} {r['device']}" for name, r in results.items()))


if __name__ == "__main__":
    app.run(main)
