"""scripts/train.py end to end: flags, config files, metrics, NaN stop, kill-and-resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxlab.train import read_metrics

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import train  # noqa: E402

FAST = ["--steps", "30", "--batch-size", "32", "--log-every", "5", "--eval-every", "15",
        "--checkpoint-every", "10", "--no-progress"]  # fmt: skip


def _by_step(records):
    """The last record of each step (steps after the last checkpoint are logged again)."""
    return {r["step"]: r for r in records if "event" not in r}


def test_run_writes_metrics_checkpoints_and_result(tmp_path):
    assert train.main([*FAST, "--workdir", str(tmp_path), "--optimizer", "momo"]) == 0
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert {"loss", "accuracy", "eval_loss", "eval_accuracy"} <= set(records[2])
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20", "30"]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["accuracy"] > 0.5  # 30 MoMo steps on digits learn something
    assert json.loads((tmp_path / "config.json").read_text())["optimizer"] == "momo"


@pytest.mark.parametrize(
    "flags",
    [
        ["--steps", "0"],
        ["--steps", "ten"],
        ["--devices", "0"],
        ["--optimizer", "nonsense"],
        ["--optimizer", "sam", "--opt", "bogus=1"],
        ["--opt", "no_equals_sign"],
        ["--dataset", "imagenet"],
        ["--model", "vgg"],
        ["--parallel", "spmd"],
        ["--learning-rate", "-1"],
        ["--batch-size", "30", "--devices", "4"],
        ["--label-noise", "1.5"],
        ["--dataset", "fashion_mnist", "--data-seed", "1"],
    ],
)
def test_bad_flags_exit_2(flags, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train.main([*flags, "--workdir", str(tmp_path)])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_tensorboard_events(tmp_path):
    args = [*FAST, "--steps", "10", "--workdir", str(tmp_path), "--tensorboard"]
    assert train.main(args) == 0
    (events,) = (tmp_path / "tensorboard").iterdir()
    data = events.read_bytes()
    assert b"loss" in data and b"eval_accuracy" in data


def test_config_file_and_flag_override(tmp_path):
    config = tmp_path / "exp.json"
    config.write_text(json.dumps({"optimizer": "sam", "optimizer_options": {"rho": 0.05},
                                  "steps": 999, "batch_size": 32}))  # fmt: skip
    workdir = tmp_path / "run"
    args = ["--config", str(config), "--steps", "10", "--log-every", "5", "--no-progress"]
    assert train.main([*args, "--workdir", str(workdir)]) == 0
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["steps"] == 10 and saved["optimizer_options"] == {"rho": 0.05}
    assert read_metrics(workdir / "metrics.jsonl")[-1]["step"] == 10


def test_shipped_configs_are_valid():
    from jaxlab.train.experiment import ExperimentConfig

    files = sorted((ROOT / "scripts" / "configs").glob("*.json"))
    assert files
    for path in files:
        ExperimentConfig.from_dict(json.loads(path.read_text()))


def test_nan_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, capsys):
    args = [*FAST, "--workdir", str(tmp_path), "--optimizer", "sgd", "--learning-rate", "1e4"]
    assert train.main(args) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err
    steps = [int(s) for s in os.listdir(tmp_path / "checkpoints")]
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert all(r["loss"] == r["loss"] for r in records if r["step"] in steps)  # not NaN
    assert not (tmp_path / "result.json").exists()


def test_existing_workdir_needs_resume(tmp_path, capsys):
    assert train.main([*FAST, "--steps", "5", "--workdir", str(tmp_path)]) == 0
    assert train.main([*FAST, "--steps", "5", "--workdir", str(tmp_path)]) == 1
    assert "--resume" in capsys.readouterr().err


def test_crash_and_resume_logs_the_same_metrics(tmp_path):
    """Interrupted after step 17 (checkpoint at 10): the resumed run recomputes 11-17 and every
    step's metrics equal the uninterrupted run's, bit for bit."""
    from jaxlab.train.experiment import ExperimentConfig, run_experiment

    config = ExperimentConfig(
        optimizer="sam", steps=30, batch_size=32, log_every=1, eval_every=15,
        checkpoint_every=10, devices=2, progress=False,
    )  # fmt: skip
    run_experiment(config, tmp_path / "full")

    def crash_at_17(record):
        if record["step"] == 17:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "cut", log=crash_at_17)
    run_experiment(config, tmp_path / "cut", resume=True)
    full = read_metrics(tmp_path / "full" / "metrics.jsonl")
    cut = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert cut[17] == {"event": "resume", "step": 10}
    assert _by_step(cut) == _by_step(full)


def test_sigkill_and_resume_logs_the_same_metrics(tmp_path):
    common = ["--steps", "300", "--batch-size", "32", "--log-every", "1",
              "--checkpoint-every", "20", "--eval-every", "100", "--optimizer", "momo",
              "--no-progress"]  # fmt: skip
    cut = tmp_path / "cut"
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *common,
                             "--workdir", str(cut)], env=env, cwd=ROOT)  # fmt: skip
    metrics = cut / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 45:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(read_metrics(metrics))
    assert killed_at < 300, "the run finished before it could be killed"
    assert train.main([*common, "--workdir", str(cut), "--resume"]) == 0
    assert train.main([*common, "--workdir", str(tmp_path / "full")]) == 0
    resumed = read_metrics(metrics)
    assert any(r.get("event") == "resume" and r["step"] >= 20 for r in resumed)
    assert _by_step(resumed) == _by_step(read_metrics(tmp_path / "full" / "metrics.jsonl"))


def test_data_seed_moves_the_split_and_seed_does_not():
    from jaxlab.data import load_digits
    from jaxlab.train.experiment import ExperimentConfig, load_experiment_data

    def held_out_labels(**kwargs):
        return load_experiment_data(ExperimentConfig(**kwargs)).y_test

    default = held_out_labels()
    np.testing.assert_array_equal(default, load_digits(seed=0).y_test)  # the loader's default
    np.testing.assert_array_equal(held_out_labels(seed=3), default)
    np.testing.assert_array_equal(held_out_labels(data_seed=1), load_digits(seed=1).y_test)
    assert not np.array_equal(held_out_labels(data_seed=1), default)
    with pytest.raises(ValueError, match="data_seed"):
        ExperimentConfig(data_seed="1")
