"""FID with the 2015 FID Inception in Keras: statistics, distances, merging, weight conversion.

Usage:
    python tools/fid.py convert pt_inception-2015-12-05-6726825d.pth --out=fid_inception.weights.h5
    export FID_INCEPTION_WEIGHTS=fid_inception.weights.h5
    python tools/fid.py stats tfds:cifar10:train --out=cifar10_train.npz [--data_dir=...]
    python tools/fid.py calc runs/cifar10/student.keras --ref=cifar10_train.npz --steps=1 [--num=50000]
    python tools/fid.py calc samples.npz --ref=cifar10_train.npz --json=fid.json
    python tools/fid.py compare a.npz b.npz
    python tools/fid.py merge shard0.npz shard1.npz --out=all.npz

Inputs: an image folder, an .npz/.npy of uint8 (N, H, W, C), tfds:NAME:SPLIT, or a .keras
denoiser (sampled with --steps/--solver/--schedule/--num_steps/--num_classes/--seed).
`calc` uses --num=50000 images by default and refuses inputs with fewer.
"""

import itertools
import json
import os
import sys
import time

import cli
from absl import flags

flags.DEFINE_string("out", None, "Output .npz (stats, merge; calc: the generated set's statistics) "
                    "or .weights.h5 (convert).")
flags.DEFINE_string("ref", None, "Reference statistics .npz for calc.")
flags.DEFINE_integer("num", None, "Images to use (calc: default 50000, refuses fewer; stats: default all).")
flags.DEFINE_string("weights", None, "FID Inception weights (.weights.h5 from convert); default "
                    "$FID_INCEPTION_WEIGHTS. 'keras-imagenet' uses keras.applications.InceptionV3 "
                    "ImageNet weights: results are NOT comparable with published FIDs.")
flags.DEFINE_enum("mode", "tf1", ["tf1", "pytorch"], "Preprocessing: tf1 (TTUR, EDM, OpenAI) or pytorch "
                  "(pytorch-fid, the official TRACT code).")
flags.DEFINE_integer("resolution", 299, "Network input side; anything but 299 is for tests only.", lower_bound=75)
flags.DEFINE_integer("batch", 64, "Images per network call.", lower_bound=1)
flags.DEFINE_enum("sqrtm", "eigh", ["eigh", "scipy"], "Matrix square root for the distance.")
flags.DEFINE_string("json", None, "Also write the result with its provenance to this .json.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir for tfds:NAME:SPLIT inputs.")
flags.DEFINE_integer("steps", None, "Sampler steps for a .keras input (default: the model's own, else all levels).")
flags.DEFINE_enum("solver", None, ["ddim", "heun"], "Sampler for a .keras input (default: the model's own, else ddim).")
flags.DEFINE_enum("schedule", None, ["karras", "cosine"], "Grid of a .keras input (default: the model's own, "
                  "else karras).")
flags.DEFINE_integer("num_steps", None, "Levels of that grid (default: the model's own, else 40).")
flags.DEFINE_integer("num_classes", 0, "Class-conditional .keras input: number of classes.")
flags.DEFINE_integer("seed", 0, "Noise seed for a .keras input.")
FLAGS = flags.FLAGS


def statistics(spec, num):
    import keras

    import keras_tract as kt
    from keras_tract.fid.features import features, load_network, open_source

    saved = kt.solvers.saved_sampling(spec) if spec.endswith(".keras") and os.path.isfile(spec) else {}
    schedule, solver, steps = kt.solvers.resolve_sampling(saved, FLAGS.schedule, FLAGS.num_steps, FLAGS.solver,
                                                          FLAGS.steps)
    count, batches = open_source(spec, num, FLAGS.data_dir, schedule=schedule, steps=steps,
                                 solver=solver, num_classes=FLAGS.num_classes, seed=FLAGS.seed)
    first = next(batches)
    batches = itertools.chain([first], batches)
    model, provenance = load_network(FLAGS.weights, FLAGS.mode, FLAGS.resolution, first.shape[1:3])
    stats = features(model, batches, FLAGS.batch, total=count)
    provenance.update(source=os.path.abspath(spec) if os.path.exists(spec) else spec, backend=keras.config.backend())
    if spec.endswith(".keras"):
        provenance.update(steps=str(steps), solver=solver, schedule=repr(schedule), seed=FLAGS.seed)
    return stats, provenance


def distance(mu1, sigma1, mu2, sigma2):
    from keras_tract.fid.stats import frechet_distance

    return frechet_distance(mu1, sigma1, mu2, sigma2, method=FLAGS.sqrtm)


def report(value, diagnostics, fields):
    from keras_tract.images import write_atomic

    extra = ", ".join(f"{k}={v}" for k, v in fields.items() if k in ("n_gen", "n_ref", "n_a", "n_b", "mode"))
    print(f"FID {value:.4f} ({extra})")
    if FLAGS.json:
        result = {"fid": value, **fields, "diagnostics": diagnostics}
        write_atomic(FLAGS.json, json.dumps(result, indent=2, default=str).encode())


def main(argv):
    from keras_tract.fid.stats import FeatureStats, load_stats, save_stats

    if len(argv) < 2 or argv[1] not in ("stats", "calc", "compare", "merge", "convert"):
        raise ValueError("Give a command: stats, calc, compare, merge or convert.")
    command, inputs = argv[1], argv[2:]
    want = {"stats": 1, "calc": 1, "compare": 2, "convert": 1}.get(command)
    if (want and len(inputs) != want) or (command == "merge" and len(inputs) < 2):
        raise ValueError(f"`{command}` takes {want or 'two or more'} input(s), got {inputs}.")
    start = time.time()
    if command == "stats":
        if not FLAGS.out:
            raise ValueError("stats needs --out=FILE.npz")
        stats, provenance = statistics(inputs[0], FLAGS.num)
        mu, sigma = stats.mu_sigma()
        save_stats(FLAGS.out, mu, sigma, n=stats.n, **{k: str(v) for k, v in provenance.items()})
        print(f"Wrote statistics of {stats.n} images to {FLAGS.out} ({time.time() - start:.0f} s)")
    elif command == "calc":
        if not FLAGS.ref:
            raise ValueError("calc needs --ref=REFERENCE.npz")
        ref_mu, ref_sigma, ref_n, ref_meta = load_stats(FLAGS.ref)
        if ref_meta.get("mode", FLAGS.mode) != FLAGS.mode:
            print(f"warning: {FLAGS.ref} was made in mode {ref_meta['mode']}, this run uses {FLAGS.mode}",
                  file=sys.stderr)
        stats, provenance = statistics(inputs[0], FLAGS.num or 50_000)
        if FLAGS.out:
            save_stats(FLAGS.out, *stats.mu_sigma(), n=stats.n, **{k: str(v) for k, v in provenance.items()})
        value, diagnostics = distance(*stats.mu_sigma(), ref_mu, ref_sigma)
        report(value, diagnostics, {"n_gen": stats.n, "n_ref": ref_n, "mode": FLAGS.mode, "ref": FLAGS.ref,
                                    "seconds": round(time.time() - start, 1), **provenance})
    elif command == "compare":
        (mu1, s1, n1, m1), (mu2, s2, n2, m2) = load_stats(inputs[0]), load_stats(inputs[1])
        if m1.get("mode", "tf1") != m2.get("mode", "tf1"):
            print(f"warning: the files were made in different modes ({m1.get('mode')} vs {m2.get('mode')}); "
                  "the distance is not a comparable FID", file=sys.stderr)
        value, diagnostics = distance(mu1, s1, mu2, s2)
        report(value, diagnostics, {"n_a": n1, "n_b": n2, "mode": m1.get("mode", "unknown"), "a": inputs[0],
                                    "b": inputs[1]})
    elif command == "merge":
        if not FLAGS.out:
            raise ValueError("merge needs --out=FILE.npz")
        loaded = [load_stats(path) for path in inputs]
        if any(n is None for _, _, n, _ in loaded):
            raise ValueError("merge needs shards that record their sample count `n` (made by `stats`).")
        merged = FeatureStats(len(loaded[0][0]))
        for mu, sigma, n, _ in loaded:
            merged.merge(FeatureStats.from_moments(mu, sigma, n))
        save_stats(FLAGS.out, *merged.mu_sigma(), n=merged.n, **loaded[0][3])
        print(f"Merged {len(inputs)} shards ({merged.n} images) into {FLAGS.out}")
    else:
        convert(inputs[0])


def convert(source):
    from keras_tract.fid.convert import assign_state_dict, load_state_dict
    from keras_tract.fid.inception import fid_inception
    from keras_tract.images import atomic_path, sha256

    if not FLAGS.out or not FLAGS.out.endswith(".weights.h5"):
        raise ValueError("convert needs --out=NAME.weights.h5")
    if not os.path.isfile(source):
        raise ValueError(f"State dict not found: {source}")
    model = fid_inception()
    result = assign_state_dict(model, load_state_dict(source))
    with atomic_path(FLAGS.out) as tmp:
        model.save_weights(tmp)
    print(f"Converted {result['tensors']} tensors ({result['values']} values) from {source} (sha256 "
          f"{sha256(source)}); max |BN gamma - 1| = {result['max_abs_gamma_minus_1']:.3g}. "
          f"Wrote {FLAGS.out} (sha256 {sha256(FLAGS.out)}).")


def reads_with_tensorflow(argv):
    """Image folders and TFDS inputs are read with TensorFlow; the other inputs need none."""
    return any(arg.startswith("tfds:") or os.path.isdir(arg) for arg in argv[2:])


if __name__ == "__main__":
    cli.run(main, tensorflow=reads_with_tensorflow)
