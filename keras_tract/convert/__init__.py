"""Published teachers as `.keras` denoisers: EDM network pickles and progressive-distillation checkpoints.

`convert_file("edm", "edm-cifar10-32x32-uncond-ve.pkl", "teacher.keras")` converts a local
file; `published("edm:cifar10-uncond-ve")` downloads a published teacher once, converts it
and returns the cached `.keras`. No code from a checkpoint ever runs: pickles are read by
`safe_pickle`, `.pt` files with `torch.load(weights_only=True)`, Flax files as msgpack data.
"""

import os

from keras_tract.convert import edm, pd
from keras_tract.images import atomic_path, sha256

FORMATS = {"edm": edm.convert, "pd": pd.convert}
_EDM = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/"
_PD = "https://storage.googleapis.com/gresearch/diffusion-distillation/"
# name -> (format, URL, SHA-256 or None where the publisher gives none).
PUBLISHED = {
    **{f"edm:{data}-{kind}": ("edm", f"{_EDM}edm-{file}-{kind}.pkl", None)
       for data, file in (("cifar10-uncond", "cifar10-32x32-uncond"), ("cifar10-cond", "cifar10-32x32-cond"),
                          ("ffhq-uncond", "ffhq-64x64-uncond"), ("afhqv2-uncond", "afhqv2-64x64-uncond"))
       for kind in ("ve", "vp")},
    "edm:imagenet64-cond-adm": ("edm", f"{_EDM}edm-imagenet-64x64-cond-adm.pkl", None),
    "pd:cifar10": ("pd", f"{_PD}cifar_original", None),
    "pd:imagenet64": ("pd", f"{_PD}imagenet_original", None),
}


def convert_file(kind, src, out, **options):
    """Converts the checkpoint `src` of format `kind` (`"edm"` or `"pd"`) and writes `out` (`.keras`) atomically.

    The result records its source's file name, format and SHA-256 (`denoiser.source`).

    Args:
        kind: a key of `FORMATS`. src: the checkpoint. out: the `.keras` path.
        **options: `pd.convert`'s `resolution`, `num_heads`, `head_dim`, `logsnr_input_type`.

    Returns:
        The report: `source`, `sha256`, `out`, `network`, `parameters`, `tensors` (all used once),
        `weights` (all set) and `notes`.
    """
    if kind not in FORMATS:
        raise ValueError(f"Unknown checkpoint format kind={kind!r}; choose one of {sorted(FORMATS)}.")
    if not os.path.isfile(src):
        raise FileNotFoundError(f"File not found: {src}")
    if not str(out).endswith(".keras"):
        raise ValueError(f"The output must be a .keras file, got --out={out}.")
    if options and kind == "edm":
        raise ValueError(f"EDM pickles record their whole architecture; options {sorted(options)} are for pd.")
    digest = sha256(src)
    denoiser, report = FORMATS[kind](src, **options)
    denoiser.source = {"file": os.path.basename(src), "format": kind, "sha256": digest}
    with atomic_path(out) as tmp:
        denoiser.save(tmp)
    return {"source": src, "sha256": digest, "out": out, **report}


def published(name, cache_dir=None):
    """The cached `.keras` of the published teacher `name` (a key of `PUBLISHED`), downloaded and
    converted on first use into `cache_dir` (default `~/.keras/keras_tract`, or `$KERAS_HOME`)."""
    import keras

    if name not in PUBLISHED:
        raise ValueError(f"Unknown published teacher {name!r}; choose one of {sorted(PUBLISHED)}.")
    kind, url, digest = PUBLISHED[name]
    fname = url.rsplit("/", 1)[1]
    cache_dir = cache_dir or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    os.makedirs(cache_dir, exist_ok=True)
    try:
        src = keras.utils.get_file(fname, url, file_hash=digest, cache_dir=cache_dir, cache_subdir="keras_tract")
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise ValueError(f"Cannot download the teacher {name} from {url} ({first}). On a machine with internet, "
                         f"download that file, run `python tools/convert.py {kind} {fname} --out=teacher.keras` "
                         "and pass --teacher=teacher.keras.") from None
    out = os.path.join(os.path.dirname(src), f"{fname}-{sha256(src)[:12]}.keras")
    if not os.path.isfile(out):
        convert_file(kind, src, out)
    return out


__all__ = ["FORMATS", "PUBLISHED", "convert_file", "published"]
