"""Published-teacher converters: checkpoints written here in the real formats, outputs checked against
independent references (tests/helpers/edm_reference.py, tests/helpers/pd_reference.py)."""

import os
import pickle
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch
from helpers import edm_reference, pd_reference
from helpers.common import once, to_numpy

from keras_tract import builders, convert
from keras_tract.convert import edm, pd, safe_pickle
from keras_tract.images import sha256

TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")

EDM_CASES = {
    "ncsnpp_cond": dict(model_type="SongUNet", embedding_type="fourier", channel_mult_noise=2,
                        encoder_type="residual", resample_filter=[1, 3, 3, 1], augment_dim=9, label_dim=3),
    "ddpmpp_cond": dict(model_type="SongUNet", label_dim=5),
    "adm_cond": dict(model_type="DhariwalUNet", label_dim=4, model_channels=64, attn_resolutions=[4]),
}


def edm_pickle(path, case, seed=0, **extra):
    torch.manual_seed(seed)
    net = edm_reference.EDMPrecond(8, 3, **EDM_CASES[case])
    edm_reference.write_pickle(path, net, **extra)
    return net


def relative_error(got, want):
    return np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max()


# DDPM++ (positional embedding, standard encoder) is checked once, in the NumPy 1.x pickle test.
@pytest.mark.parametrize("case", ["ncsnpp_cond", "adm_cond"])
def test_edm_pickle_converts_to_the_same_denoiser(case, tmp_path):
    net = edm_pickle(tmp_path / "net.pkl", case)
    denoiser, report = edm.convert(str(tmp_path / "net.pkl"))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    sigma = np.array([0.01, 1.0, 40.0], "float32")
    label_dim = EDM_CASES[case].get("label_dim", 0)
    labels = np.eye(label_dim, dtype="float32")[[0, 1, 2]] if label_dim else None
    want = edm_reference.denoise(net, x, sigma, labels)
    got = to_numpy(denoiser(x, sigma, *([] if labels is None else [labels])))
    assert relative_error(got, want) < 1e-4
    # The raw network too (c_skip hides little at large sigma, but not at small sigma).
    total = sigma[:, None, None, None] ** 2 + 0.25
    raw = (want - 0.25 / total * x) / (sigma[:, None, None, None] * 0.5 / np.sqrt(total))
    assert relative_error(to_numpy(denoiser.network_output(x, sigma, labels)), raw) < 1e-4
    state = dict(edm_reference.EDMPrecond.state_dict(net))
    assert report["tensors"] == len(state) and report["weights"] == len(denoiser.network.weights)
    assert report["parameters"] == sum(v.numel() for k, v in state.items() if "resample_filter" not in k
                                       and "map_augment" not in k)
    if EDM_CASES[case].get("augment_dim"):
        assert any("augment_dim=9" in note for note in report["notes"])


@once
def test_edm_pickles_of_numpy1_and_training_snapshots_convert(tmp_path):
    net = edm_pickle(tmp_path / "a.pkl", "ddpmpp_cond", loss_fn=edm_reference.Linear(2, 2), augment_pipe=None,
                     dataset_kwargs={"resolution": 8})
    # Protocol 3 names globals as text: rewrite NumPy 2's scalar reconstructor as NumPy 1.x wrote it.
    edm_reference._persistence_module()
    data = pickle.dumps({"ema": net}, protocol=3, fix_imports=False)
    assert b"numpy._core.multiarray\nscalar" in data
    (tmp_path / "b.pkl").write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    x, sigma, labels = np.ones((1, 8, 8, 3), "float32"), np.ones(1, "float32"), np.eye(5, dtype="float32")[:1]
    outputs = [to_numpy(edm.convert(str(tmp_path / f))[0](x, sigma, labels)) for f in ("a.pkl", "b.pkl")]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert relative_error(outputs[0], edm_reference.denoise(net, x, sigma, labels)) < 1e-4


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@once
def test_pickles_that_would_run_code_are_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"ema": _RunsCode(marker)}))
    with pytest.raises(ValueError, match=r"refusing to load global posix\.system"):
        edm.convert(str(tmp_path / "evil.pkl"))
    # A persistence object's source code is data here: EDM's loader would exec it.
    net = edm_reference.EDMPrecond(8, 3, **EDM_CASES["adm_cond"])
    source = f"open({str(marker)!r}, 'w').close()\n"
    saved, edm_reference.Persistent.module_src = edm_reference.Persistent.module_src, source
    try:
        edm_reference.write_pickle(tmp_path / "net.pkl", net)
    finally:
        edm_reference.Persistent.module_src = saved
    assert source.encode() in (tmp_path / "net.pkl").read_bytes()
    edm.convert(str(tmp_path / "net.pkl"))
    assert not marker.exists()
    data = (tmp_path / "net.pkl").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable EDM network pickle") as error:
        edm.convert(str(tmp_path / "cut.pkl"))
    assert "\n" not in str(error.value)
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"ema": {"weights": [1, 2]}}))
    with pytest.raises(ValueError, match="holds no EDM network"):
        edm.convert(str(tmp_path / "other.pkl"))
    assert safe_pickle.ALLOWED  # the allow-list is the whole trust surface
    assert not marker.exists()


PD_CASES = {
    "cifar10_like": dict(),
    "imagenet64_like": dict(mult=(1, 2, 2), attn_levels=(1, 2), heads=None, head_dim=16, out_ch=6, classes=5),
    "conv_resample": dict(resblock_resample=False, heads=2),
}


@pytest.mark.parametrize("case", [pytest.param("cifar10_like", marks=once), "imagenet64_like", "conv_resample"])
def test_progressive_distillation_checkpoints_convert_to_the_same_network(case, tmp_path):
    kw = PD_CASES[case]
    rng = np.random.default_rng(0)
    params = pd_reference.random_params(rng, **kw)
    pd_reference.write_flax(tmp_path / "ck", params)
    pd_reference.write_port(tmp_path / "ck.pt", params)
    res = 8 << (len(kw.get("mult", (1, 2))) - 1)
    z = rng.normal(size=(3, res, res, 3)).astype("float32")
    logsnr = np.array([-15.0, 0.0, 12.0], "float32")
    labels = np.eye(kw["classes"], dtype="float32")[[0, 2, 4]] if kw.get("classes") else None
    want = pd_reference.unet(params, z, logsnr, labels)
    heads = {"head_dim": 16} if kw.get("head_dim") else {"num_heads": kw.get("heads", 1)}
    for path, options in ((tmp_path / "ck", {}), (tmp_path / "ck.pt", heads)):
        denoiser, report = pd.convert(str(path), **options)
        inputs = [z, logsnr] + ([] if labels is None else [labels])
        assert relative_error(to_numpy(denoiser.network(inputs)), want) < 1e-4, path
        assert report["weights"] == len(denoiser.network.weights)
    leaves = lambda tree: sum(leaves(v) if isinstance(v, dict) else 1 for v in tree.values())  # noqa: E731
    assert report["tensors"] == leaves(params)
    # The denoiser in VE form: x = z / sqrt(gamma), sigma^2 = (1 - gamma) / gamma, and an x-and-eps
    # model mixes its heads as (1 - gamma) x_head + gamma (x - sigma eps_head).
    gamma = 1 / (1 + np.exp(-logsnr.astype(np.float64)))[:, None, None, None]
    sigma = np.sqrt((1 - gamma) / gamma)
    x = z / np.sqrt(gamma)
    expected = want if want.shape[-1] == 3 else (1 - gamma) * want[..., :3] + gamma * (x - sigma * want[..., 3:])
    got = to_numpy(denoiser(x.astype("float32"), sigma.reshape(-1).astype("float32"),
                            *([] if labels is None else [labels])))
    assert relative_error(got, expected) < 1e-4
    assert denoiser.prediction == ("both" if kw.get("out_ch") == 6 else "x")


@once
def test_progressive_distillation_bad_files_fail_in_one_line(tmp_path):
    params = pd_reference.random_params(np.random.default_rng(0))
    pd_reference.write_flax(tmp_path / "ck", params)
    data = (tmp_path / "ck").read_bytes()
    (tmp_path / "cut").write_bytes(data[:-100])
    (tmp_path / "text").write_bytes(b"hello, not a checkpoint")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    for name, message in (("cut", "not a readable Flax msgpack checkpoint"), ("text", "not a readable Flax"),
                          ("other.pt", "not a state dict of ml-tract's UNet")):
        with pytest.raises(ValueError, match=message) as error:
            pd.convert(str(tmp_path / name))
        assert "\n" not in str(error.value)
    pd_reference.write_port(tmp_path / "ck.pt", params)
    with pytest.raises(ValueError, match="head_dim=48"):
        pd.convert(str(tmp_path / "ck.pt"), head_dim=48)  # the attention has 64 channels


@once
def test_convert_cli_and_published_teachers(tmp_path, monkeypatch):
    net = edm_pickle(tmp_path / "edm-test.pkl", "adm_cond")
    out = tmp_path / "teacher.keras"
    result = subprocess.run([sys.executable, os.path.join(TOOLS, "convert.py"), "edm", str(tmp_path / "edm-test.pkl"),
                             f"--out={out}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "each used once" in result.stdout and "dropout 0.1 (training) -> 0" in result.stdout
    loaded = keras.saving.load_model(out)
    digest = sha256(tmp_path / "edm-test.pkl")
    assert loaded.source == {"file": "edm-test.pkl", "format": "edm", "sha256": digest}
    assert digest in result.stdout
    x, sigma, labels = np.ones((2, 8, 8, 3), "float32"), np.array([0.5, 3.0], "float32"), np.eye(4, dtype="float32")[:2]
    assert relative_error(to_numpy(loaded(x, sigma, labels)), edm_reference.denoise(net, x, sigma, labels)) < 1e-4
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]

    # Teachers by name: downloaded once into the cache, converted once, then reused.
    url = (tmp_path / "edm-test.pkl").as_uri()
    monkeypatch.setitem(convert.PUBLISHED, "edm:test", ("edm", url, digest))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    first = builders.teacher_file("edm:test")
    assert first.endswith(".keras") and first.startswith(str(tmp_path / "home"))
    stamp = os.path.getmtime(first)
    assert builders.teacher_file("edm:test") == first and os.path.getmtime(first) == stamp
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(first)(x, sigma, labels)),
                               to_numpy(loaded(x, sigma, labels)), rtol=1e-6)
    monkeypatch.setitem(convert.PUBLISHED, "edm:missing", ("edm", (tmp_path / "absent.pkl").as_uri(), None))
    with pytest.raises(ValueError, match=r"Cannot download the teacher edm:missing .*tools/convert.py edm absent.pkl "
                                         r"--out=teacher.keras.*--teacher=teacher.keras"):
        builders.teacher_file("edm:missing")
    with pytest.raises(ValueError, match="Unknown published teacher 'pd:cifar100'"):
        builders.teacher_file("pd:cifar100")
