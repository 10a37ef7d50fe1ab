"""benchmarks/anchors.py: the official code comes from checkouts the user names, and wrong names fail at once."""

import os
import subprocess
import sys

from helpers.common import once

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "anchors.py")


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120)


@once
def test_half_given_or_wrong_checkouts_fail_with_one_line(tmp_path):
    half = _run(f"--edm={tmp_path}")
    assert half.returncode == 1
    assert half.stderr.strip().splitlines()[-1] == (
        f"Give both --edm and --ml_tract (or neither), got edm={str(tmp_path)!r}, ml_tract=None.")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "networks.py").write_text("")
    wrong = _run(f"--edm={tmp_path}", f"--ml_tract={tmp_path}")
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1] == (
        f"--ml_tract={str(tmp_path)!r} has no tc_distill_edm.py: point it to a checkout of the repository.")
