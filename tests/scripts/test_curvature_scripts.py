"""scripts/curvature.py and scripts/compare_optimizers.py (the main job) at tiny sizes."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import compare_optimizers  # noqa: E402
import curvature  # noqa: E402
import train  # noqa: E402

SMALL = ["--num-examples", "64", "--top-k", "2", "--trace-probes", "8", "--density-runs", "2",
         "--density-steps", "10"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    args = ["--steps", "20", "--batch-size", "32", "--checkpoint-every", "10", "--no-progress"]
    assert train.main([*args, "--workdir", str(workdir), "--model-opt", "features=(32,)"]) == 0
    return workdir


def test_curvature_script_writes_summary_and_plots(run_dir, tmp_path):
    out = tmp_path / "curv"
    assert curvature.main(["--workdir", str(run_dir), "--out", str(out), *SMALL]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 20
    eigenvalues = summary["eigenvalues"]
    assert len(eigenvalues) == 2 and eigenvalues[0] >= eigenvalues[1] > 0
    assert summary["lambda_max"] == eigenvalues[0] and np.isfinite(summary["trace"])
    # λ_max of a PSD-dominated Hessian is below its trace plus the negative mass, and positive.
    assert summary["trace"] > eigenvalues[0] + eigenvalues[1] - 3 * summary["trace_stderr"] - 1
    for name in ("density.png", "landscape.png"):
        assert (out / name).stat().st_size > 1000


def test_curvature_script_earlier_step_and_errors(run_dir, tmp_path, capsys):
    out = tmp_path / "curv10"
    assert (
        curvature.main(["--workdir", str(run_dir), "--out", str(out), "--step", "10", *SMALL]) == 0
    )
    assert json.loads((out / "summary.json").read_text())["step"] == 10
    assert curvature.main(["--workdir", str(run_dir), "--step", "15", *SMALL]) == 1
    assert "no checkpoint 15" in capsys.readouterr().err
    for bad in (["--workdir", str(tmp_path)], ["--workdir", str(run_dir), "--top-k", "0"],
                ["--workdir", str(run_dir), "--trace-probes", "1"]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            curvature.main(bad)
        assert info.value.code == 2


def test_main_job_tiny(tmp_path, capsys):
    args = ["--dataset", "digits", "--steps", "30", "--curvature-examples", "64",
            "--trace-probes", "4", "--density-runs", "1"]  # fmt: skip
    assert compare_optimizers.main([*args, "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["runs"]) == set(compare_optimizers.OPTIMIZERS)
    for row in summary["runs"].values():
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["lambda_max"] > 0
        assert (tmp_path / "sgd_momentum" / "metrics.jsonl").exists()
    assert (tmp_path / "density.png").stat().st_size > 1000
    assert "| sam |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        compare_optimizers.main(["--steps", "0", "--workdir", str(tmp_path)])
    assert info.value.code == 2
