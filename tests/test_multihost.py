import json
import os
import subprocess
import sys

import pytest
from helpers.common import once_beside_jax


@pytest.mark.slow
@once_beside_jax
def test_two_processes_preempted_and_resumed_equal_one_process():
    """Two JAX processes x two CPU devices (`tests/helpers/multihost.py`): a SIGTERM to process 1 alone stops
    both at one step with status 75 and a checkpoint; resumed, they end with the one-process student,
    and the workdir holds one set of outputs, as one process leaves them. One process resuming the same
    checkpoint ends there too."""
    here = os.path.dirname(__file__)
    result = subprocess.run([sys.executable, os.path.join(here, "helpers", "multihost.py")], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in report, json.dumps(report, indent=1)[-6000:]
    assert report["preempted_codes"] == [75, 75] and report["resumed_codes"] == [0, 0] and report["single_code"] == 0
    assert report["on_one_code"] == 0
    (line,) = report["preempted_at"]
    step = int(line.split("Preempted at step ")[1].split(":")[0])
    assert 8 < step < 48  # after the first checkpoint (step 8), before the end
    for lines in (report["resumed_lines"], report["on_one_resumed"]):
        assert len(lines) == 1 and lines[0].startswith(f"Resuming distill from step {step} of 48 ")
    # One writer: the files of the one-process run (one TensorBoard file per fit() call), nothing from process 1.
    single, multi = report["files"]["single"], report["files"]["multi"]
    assert sorted(set(multi)) == sorted(set(single)) and report["process_1_output"] == []
    assert "distill_checkpoint.keras" in report["files_after_preemption"]
    assert not any(".tmp-" in name for name in multi)
    assert report["max_weight_difference"]["multi"] < 2e-5 and report["max_weight_difference"]["on_one"] < 2e-5
