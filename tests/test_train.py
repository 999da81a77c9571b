"""Trainer: schedule, config round trip, early stopping, SIGKILL + resume equals an uninterrupted run,
two CPU processes (gloo), and `vtc evaluate --checkpoint`."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_runs import SUBPROCESS_ENV, TINY_TRAINING

import vtc.world  # noqa: F401  (registers the synthetic data source and the scene encoder that the runs use)
from vtc.lmm.model import VideoLMM
from vtc.train.config import load_train_config, parse_override, save_train_config
from vtc.train.trainer import Trainer, restarted_warmup_cosine, warmup_cosine


def write_config(directory: Path, **sections: dict) -> Path:
    raw = json.loads(json.dumps(TINY_TRAINING))
    for name, values in sections.items():
        raw[name] = {**raw[name], **values}
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def train_command(config: Path, output_dir: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "vtc.cli", "train", "--config", str(config)]
    return [*command, "--set", f"run.output_dir={output_dir}", *extra]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / "checkpoints" / json.loads((run / "checkpoints" / "last.json").read_text())["dir"] / "model"
    return {f"{file.name}:{k}": v for file in folder.rglob("*.safetensors") for k, v in load_file(file).items()}


def val_lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("split") == "val"]


def test_warmup_then_cosine() -> None:
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(4, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)
    values = [warmup_cosine(step, 100, 10) for step in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_warm_restarts_repeat_the_schedule_per_cycle() -> None:
    assert [restarted_warmup_cosine(step, 100, 0.1) for step in range(101)] == [
        warmup_cosine(step, 100, 10) for step in range(101)
    ]
    three = [restarted_warmup_cosine(step, 300, 0.1, cycles=3) for step in range(300)]
    assert three[:100] == three[100:200] == three[200:] == [warmup_cosine(step, 100, 10) for step in range(100)]
    assert restarted_warmup_cosine(300, 300, 0.1, cycles=3) == pytest.approx(0.0)
    uneven = [restarted_warmup_cosine(step, 10, 0.1, cycles=3) for step in range(11)]
    assert uneven[0] == uneven[4] == uneven[8] == 1.0  # cycles of 4, 4 and a last of 2, each warming up one step
    assert uneven[10] == pytest.approx(0.0) and uneven[3] < uneven[2] < 1.0


def test_config_yaml_overrides_round_trip(tmp_path: Path) -> None:
    config = load_train_config(
        [write_config(tmp_path)], ["optim.lr=1e-4", "model.lmm.compressor.name=tome", "run.patience=3"]
    )
    assert config.optim.lr == 1e-4 and config.run.patience == 3
    assert config.model.lmm["compressor"]["name"] == "tome" and config.model.lmm["projector"] == "linear"
    assert config.optim.weight_decay == 0.01 and config.data.num_train == 8
    save_train_config(config, tmp_path / "resolved.yaml")
    assert load_train_config([tmp_path / "resolved.yaml"]) == config
    assert parse_override("data.synthetic.event_length=[2, 3]") == {"data": {"synthetic": {"event_length": [2, 3]}}}
    with pytest.raises(ValueError, match="unknown keys"):
        load_train_config([], ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="must be a number"):
        load_train_config([], ["optim.lr=fast"])
    with pytest.raises(ValueError, match=r"KEY\.PATH=VALUE"):
        parse_override("optim.lr")


def test_early_stopping_on_stale_validation_miou(tmp_path: Path) -> None:
    config = load_train_config(
        [write_config(tmp_path)],
        [
            f"run.output_dir={tmp_path / 'run'}",
            "optim.lr=0",
            "optim.max_steps=40",
            "run.eval_every=2",
            "run.patience=2",
        ],
    )
    summary = Trainer(config).fit()
    assert summary["stopped_early"] and summary["step"] == 6  # evals at 2 (best), 4 and 6 (no gain)
    assert [line["step"] for line in val_lines(tmp_path / "run")] == [2, 4, 6]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["step"] == 6
    assert (tmp_path / "run" / "config.yaml").exists()


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subprocess.run(train_command(config, tmp_path / "full"), env=SUBPROCESS_ENV, check=True, capture_output=True)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        train_command(config, interrupted), env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pointer = interrupted / "checkpoints" / "last.json"
    deadline = time.monotonic() + 60
    while not (pointer.exists() and json.loads(pointer.read_text())["step"] >= 3):
        assert process.poll() is None and time.monotonic() < deadline, "training ended before the kill"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads(pointer.read_text())["step"]
    assert killed_at < 10 and not (interrupted / "results.json").exists()
    subprocess.run(train_command(config, interrupted, "--resume"), env=SUBPROCESS_ENV, check=True, capture_output=True)
    expected, resumed = final_weights(tmp_path / "full"), final_weights(interrupted)
    assert expected.keys() == resumed.keys() and len(expected) > 0
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name
    assert val_lines(interrupted) == val_lines(tmp_path / "full")
    steps = [json.loads(line)["step"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert steps == [
        json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_processes_gloo(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, optim={"max_steps": 4}, run={"eval_every": 2, "save_every": None, "log_every": 1, "progress": False}
    )
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "vtc.cli",
        "train",
        "--config",
        str(config),
        "--set",
        f"run.output_dir={tmp_path / 'run'}",
    ]
    result = subprocess.run(command, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["num_processes"] == 2
    run = tmp_path / "run"
    last = run / "checkpoints" / json.loads((run / "checkpoints" / "last.json").read_text())["dir"]
    assert sorted(path.name for path in last.glob("rng-rank*.pt")) == ["rng-rank0.pt", "rng-rank1.pt"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2, 3, 4, 4]  # each line once: train logs, and validation at steps 2 and 4
    assert all(line["num_queries"] == 2 for line in val_lines(run))
    assert json.loads((run / "results.json").read_text())["num_processes"] == 2


def test_evaluate_checkpoint_writes_predictions_and_metrics(tmp_path: Path) -> None:
    config = load_train_config(
        [write_config(tmp_path)], [f"run.output_dir={tmp_path / 'run'}", "optim.max_steps=2", "run.eval_every=2"]
    )
    Trainer(config).fit()
    out = tmp_path / "eval"
    command = [sys.executable, "-m", "vtc.cli", "evaluate", "--checkpoint", str(tmp_path / "run"), "--out", str(out)]
    result = subprocess.run(command, env=SUBPROCESS_ENV, capture_output=True, text=True, check=True)
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["num_queries"] == 2 and metrics == json.loads((out / "metrics.json").read_text())
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all("pred_relevant_windows" in record and "text" in record for record in records)
    final = val_lines(tmp_path / "run")[-1]
    assert metrics == {key: value for key, value in final.items() if key not in ("step", "split")}


def test_scene_encoder_is_pretrained_once_cached_and_its_features_kept(tmp_path: Path) -> None:
    scene = {"type": "scene", "width": 8, "pretrain_steps": 3}
    config = write_config(
        tmp_path, model={**TINY_TRAINING["model"], "lmm": {**TINY_TRAINING["model"]["lmm"], "encoder": scene}}
    )
    overrides = [f"run.cache_dir={tmp_path / 'cache'}", "data.cache_in_memory=true", "optim.max_steps=4"]
    shared: dict = {}
    first = Trainer(load_train_config([config], [*overrides, f"run.output_dir={tmp_path / 'a'}"]), None, shared)
    first.fit()
    (weights,) = (tmp_path / "cache").glob("scene-encoder-*.safetensors")
    report = json.loads(weights.with_suffix(".json").read_text())
    assert report["settings"]["steps"] == 3 and 0.0 <= report["object_accuracy"] <= 1.0
    assert type(first.train_data).__name__ == "EncodedSamples" and len(first.train_data.cache) == 8
    stamp = weights.stat().st_mtime_ns
    second = Trainer(load_train_config([config], [*overrides, f"run.output_dir={tmp_path / 'b'}"]), None, shared)
    second.fit()
    assert weights.stat().st_mtime_ns == stamp and len(list((tmp_path / "cache").iterdir())) == 2  # reused
    assert second.train_data.cache is first.train_data.cache and len(shared) == 2  # encoded once, train and val
    changed = [*overrides, "data.num_frames=3", "optim.max_steps=1", f"run.output_dir={tmp_path / 'c'}"]
    other = Trainer(load_train_config([config], changed), None, shared)
    other.fit()
    assert len(shared) == 4 and next(iter(other.train_data.cache.values()))["features"].shape[0] == 3
    torch.testing.assert_close(second.model.encoder.state_dict(), first.model.encoder.state_dict())
    weights.unlink()  # the checkpoint keeps its own copy of the encoder
    loaded = VideoLMM.from_pretrained(tmp_path / "b" / "checkpoints" / "step-00000004" / "model")
    torch.testing.assert_close(loaded.encoder.state_dict(), first.model.encoder.state_dict())
