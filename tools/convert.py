"""Converts a published teacher checkpoint into a `.keras` denoiser for --teacher.

Usage:
    python tools/convert.py edm edm-cifar10-32x32-uncond-ve.pkl --out=teacher.keras
    python tools/convert.py pd cifar_original --out=teacher.keras
    python tools/convert.py pd cifar_original.pt --out=teacher.keras   # ml-tract's PyTorch conversion
    python tools/convert.py edm:cifar10-uncond-ve                      # download once, convert, print the path

edm: an NVlabs/edm network pickle (EDMPrecond around SongUNet or DhariwalUNet). pd: a Google
progressive-distillation Flax checkpoint or ml-tract's `.pt` of it (VPDenoiser around GoogleUNet).
No code from the checkpoint runs. The report lists the parameters, every source tensor used once,
every weight set, and the source's SHA-256 (also stored in the .keras).
"""

import json

import cli
from absl import flags

flags.DEFINE_string("out", None, "Output .keras file.")
flags.DEFINE_integer("resolution", None, "pd: image size (default: the published rule, 8x8 at the last level).")
flags.DEFINE_integer("num_heads", None, "pd .pt: attention heads (a .pt does not record them; default: one "
                     "head, or 64 channels per head for a class-conditional model).")
flags.DEFINE_integer("head_dim", None, "pd .pt: channels per attention head.")
flags.DEFINE_enum("logsnr_input_type", "inv_cos", ["inv_cos", "linear", "sigmoid"],
                  "pd: the network's logSNR input (the published models: inv_cos).")
flags.DEFINE_string("json", None, "Also write the report to this .json.")
FLAGS = flags.FLAGS


def main(argv):
    from keras_tract import convert
    from keras_tract.images import write_atomic

    args = argv[1:]
    if len(args) == 1 and args[0] in convert.PUBLISHED:
        print(convert.published(args[0]))
        return
    if len(args) != 2 or args[0] not in convert.FORMATS:
        raise ValueError(f"Give a format and a file (edm FILE.pkl, pd FILE) or a published name "
                         f"({', '.join(sorted(convert.PUBLISHED))}); got {args}.")
    if not FLAGS.out:
        raise ValueError("Give --out=FILE.keras.")
    kind, src = args
    options = {k: getattr(FLAGS, k) for k in ("resolution", "num_heads", "head_dim") if getattr(FLAGS, k)}
    if kind == "pd" and FLAGS.logsnr_input_type != "inv_cos":
        options["logsnr_input_type"] = FLAGS.logsnr_input_type
    report = convert.convert_file(kind, src, FLAGS.out, **options)
    print(f"Converted {src} (SHA-256 {report['sha256']}) -> {FLAGS.out}: {report['network']}, "
          f"{report['parameters']:,} parameters; {report['tensors']} source tensors each used once, "
          f"{report['weights']} weights all set.")
    for note in report["notes"]:
        print(f"  note: {note}")
    if FLAGS.json:
        write_atomic(FLAGS.json, json.dumps(report, indent=2).encode())


if __name__ == "__main__":
    cli.run(main, tensorflow=False)
