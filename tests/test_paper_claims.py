"""benchmarks/paper_claims.py: its exact references are exact, and the quick study is complete and consistent."""

import importlib.util
import json
import os

import numpy as np
import pytest
from helpers.common import once, to_numpy

import keras_tract

PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "paper_claims.py")
_spec = importlib.util.spec_from_file_location("paper_claims", PATH)
claims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(claims)


def test_exact_references_are_the_mixture_s():
    means, stds, weights = claims.mixture()
    teacher = keras_tract.GaussianMixtureDenoiser(means, stds, weights)
    rng = np.random.default_rng(0)
    for sigma in (0.002, 0.05, 1.0, 80.0):
        x = means[rng.integers(0, 8, 64)] + np.hypot(0.05, sigma) * rng.standard_normal((64, 2))
        got = to_numpy(teacher(x.astype("float32"), np.full(64, sigma, "float32")))
        np.testing.assert_allclose(claims.mixture_denoiser(x, sigma), got, atol=2e-5 * max(1, sigma))

    # Moments: against a large sample of the mixture.
    mean, cov = claims.mixture_moments()
    draws = means[rng.integers(0, 8, 400_000)] + 0.05 * rng.standard_normal((400_000, 2))
    np.testing.assert_allclose(mean, draws.mean(0), atol=3e-3)
    np.testing.assert_allclose(cov, np.cov(draws, rowvar=False), atol=3e-3)

    # The ODE solution: a float64 Heun solver on 1024 Karras levels converges to it; the library's
    # 32-level Heun teacher is close to it, a 1-step DDIM far from it.
    noise = rng.standard_normal((200, 2))
    exact = claims.exact_ode_solution(noise, 80.0)
    sigmas = keras_tract.KarrasSchedule(1024).sigmas[::-1]
    x = 80.0 * noise
    for s, t in zip(sigmas[:-1], sigmas[1:]):
        d = (x - claims.mixture_denoiser(x, s)) / s
        x_next = x + (t - s) * d
        if t > 0:
            x_next = x + (t - s) * (d + (x_next - claims.mixture_denoiser(x_next, t)) / t) / 2
        x = x_next
    assert np.sqrt(np.mean(np.sum((x - exact) ** 2, axis=1))) < 2e-4
    schedule = keras_tract.KarrasSchedule(32)
    heun = to_numpy(keras_tract.sample(teacher, schedule, noise.astype("float32")))
    ddim = to_numpy(keras_tract.sample(teacher, schedule, noise.astype("float32"), steps=1, solver="ddim"))
    rmse = lambda a: np.sqrt(np.mean(np.sum((a - exact) ** 2, axis=1)))  # noqa: E731
    assert rmse(heun) < 0.05 < 0.3 < rmse(ddim)


def _row(markdown, label):
    lines = [line for line in markdown.splitlines() if line.startswith(f"| {label} |")]
    assert len(lines) == 1, (label, lines)
    return [cell.strip().strip("*") for cell in lines[0].split("|")[2:-1]]


@once
@pytest.mark.slow
def test_quick_study_is_complete_consistent_and_reproducible(tmp_path):
    out, cache = str(tmp_path / "claims"), str(tmp_path / "cache")
    study = claims.run_study(claims.QUICK, out, cache_dir=cache, log=lambda line: None)
    with open(f"{out}.json") as f:
        saved = json.load(f)
    specs = claims.grid(claims.QUICK)
    assert set(saved["runs"]) == set(specs) and len(specs) == 11
    for key, run in saved["runs"].items():
        assert {k: run[k] for k in specs[key]} == specs[key]
        assert set(run["metrics"]) >= set(claims.columns("gmm"))
        assert all(np.isfinite(v) for v in run["metrics"].values()), key
    assert all(np.isfinite(v) for m in saved["baselines"]["gmm"].values() for v in m.values())

    # Every table row in the markdown holds the mean and std over seeds of its runs, recomputed here,
    # and every run appears in a table.
    with open(f"{out}.md") as f:
        sections = {part.split("\n", 1)[0]: part for part in f.read().split("\n## ")}
    shown = set()
    for name, title, rows in claims.tables(saved):
        body = sections[f"`{name}`: {title}"]
        for label, runs in rows:
            assert len(runs) == 1, label
            seeds, *cells = _row(body, label)
            assert seeds == "1" and len(cells) == len(claims.columns(name))
            for column, text in zip(claims.columns(name), cells):
                assert text == f"{runs[0]['metrics'][column]:.4f} ± 0.0000", (label, column, text)
            shown.update(claims.run_id(r) for r in runs)
    assert shown == set(specs)
    with open(f"{out}.png", "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000

    # A rerun skips finished runs; a removed run is recomputed with the same numbers.
    messages = []
    claims.run_study(claims.QUICK, out, cache_dir=cache, log=messages.append)
    assert messages[0].startswith("11 of 11 runs done; 0 to run")
    key = next(k for k in specs if k.startswith("gmm/binary"))
    removed = saved["runs"].pop(key)
    with open(f"{out}.json", "w") as f:
        json.dump(saved, f)
    again = claims.run_study(claims.QUICK, out, cache_dir=cache, log=lambda line: None)
    for metric in claims.columns("gmm"):
        np.testing.assert_allclose(again["runs"][key]["metrics"][metric], removed["metrics"][metric], rtol=1e-5)
    assert study["runs"].keys() == again["runs"].keys()

    other = {"gmm": {**claims.QUICK["gmm"], "seeds": 2}}
    with pytest.raises(SystemExit, match="another settings"):
        claims.run_study(other, out, cache_dir=cache)


@once
def test_a_failed_run_keeps_the_others_and_a_rerun_retries_it(tmp_path, monkeypatch):
    out, specs, failing = str(tmp_path / "claims"), claims.grid(claims.QUICK), set()
    failing.add(next(iter(specs)))

    def work(spec, settings, cache_dir):
        if claims.run_id(spec) in failing:
            raise RuntimeError("out of memory")
        return {**spec, "metrics": {c: 1.0 for c in claims.columns("gmm")}, "seconds": 0.0}

    monkeypatch.setattr(claims, "_work", work)
    monkeypatch.setattr(claims, "references", lambda *args: (None, {"teacher": dict.fromkeys(claims.METRICS, 0.0)}))
    with pytest.raises(SystemExit, match=r"1 run\(s\) failed \(gmm/.*run the same command again"):
        claims.run_study(claims.QUICK, out, log=lambda line: None)
    with open(f"{out}.json") as f:
        assert set(json.load(f)["runs"]) == set(specs) - failing
    failing.clear()
    assert set(claims.run_study(claims.QUICK, out, log=lambda line: None)["runs"]) == set(specs)
