"""Run folders are never destroyed nor silently mixed: refusing a fresh run over a finished one, archiving on
overwrite, refusing a changed config on resume, a torn metrics line, a truncated checkpoint, the best pointer and
config values checked where they enter."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from test_train import write_config

from vtc.cli import main
from vtc.train.checkpoint import CorruptCheckpointError, verify_checkpoint
from vtc.train.config import TrainConfig, load_train_config
from vtc.train.evaluate import evaluate_checkpoint
from vtc.train.run_folder import RunFolderError, config_differences, read_metrics
from vtc.train.trainer import Trainer

# lr 0 keeps the weights, so validation mIoU never improves after the first evaluation: the best is step 1.
FINISHED = ["optim.lr=0", "optim.max_steps=3", "run.eval_every=1", "run.save_every=1", "run.log_every=1"]


def tiny_config(base: Path, run: Path, *overrides: str) -> TrainConfig:
    """The tiny run of `FINISHED` in `run`, with `overrides` on top."""
    return load_train_config([write_config(base)], [*FINISHED, f"run.output_dir={run}", *overrides])


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run folder (relative path -> bytes)."""
    return {path.relative_to(run).as_posix(): path.read_bytes() for path in run.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (3 steps, evaluated at each, best at step 1), trained once for the module."""
    base = tmp_path_factory.mktemp("finished")
    Trainer(tiny_config(base, base / "run")).fit()
    return base / "run"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run that a test may change."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def test_train_into_finished_run_refuses_and_keeps_checkpoints(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_copy)
    with pytest.raises(RunFolderError, match=r"already holds a run.*--resume.*--overwrite"):
        Trainer(tiny_config(tmp_path, run_copy, "optim.lr=1e-3")).fit()
    command = ["train", "--config", str(write_config(tmp_path)), "--set", f"run.output_dir={run_copy}"]
    assert main(command) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert snapshot(run_copy) == before


def test_overwrite_archives_the_old_run(run_copy: Path, tmp_path: Path) -> None:
    before = snapshot(run_copy)
    command = ["train", "--config", str(write_config(tmp_path)), "--set", f"run.output_dir={run_copy}"]
    assert main([*command, *(f"--set={item}" for item in FINISHED), "--set=optim.max_steps=1", "--overwrite"]) == 0
    (archived,) = tmp_path.glob("run.archived-*")
    assert re.fullmatch(r"run\.archived-\d{8}-\d{6}", archived.name)
    assert snapshot(archived) == before
    assert [record["step"] for record in read_metrics(run_copy / "metrics.jsonl")[0]] == [1, 1]


def test_resume_refuses_changed_lr(run_copy: Path, tmp_path: Path) -> None:
    before = snapshot(run_copy)
    with pytest.raises(RunFolderError, match=r"optim\.lr: 0\.0 -> 0\.001"):
        Trainer(tiny_config(tmp_path, run_copy, "optim.lr=1e-3", "optim.max_steps=4")).fit(resume=True)
    assert snapshot(run_copy) == before


def test_resume_refuses_changed_compressor(run_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match=r"model\.lmm\.compressor\.name: 'none' -> 'tome'"):
        Trainer(tiny_config(tmp_path, run_copy, "model.lmm.compressor.name=tome")).fit(resume=True)


def test_resume_and_overwrite_exclude_each_other(run_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="exclude each other"):
        Trainer(tiny_config(tmp_path, run_copy)).fit(resume=True, overwrite=True)


def test_config_differences_ignore_safe_keys() -> None:
    saved = {"optim": {"lr": 0.1, "max_steps": 3}, "run": {"eval_every": 1}}
    new = {"optim": {"lr": 0.2, "max_steps": 9}, "run": {"eval_every": 5}}
    assert config_differences(saved, new) == ["optim.lr: 0.1 -> 0.2"]


def test_resume_allows_more_max_steps(run_copy: Path, tmp_path: Path) -> None:
    summary = Trainer(tiny_config(tmp_path, run_copy, "optim.max_steps=4", "run.eval_every=2")).fit(resume=True)
    assert summary["step"] == 4
    assert load_train_config([run_copy / "config.yaml"]).optim.max_steps == 4
    steps = [record["step"] for record in read_metrics(run_copy / "metrics.jsonl")[0]]
    assert steps == [1, 1, 2, 2, 3, 3, 4, 4]


def test_resume_skips_torn_metrics_line(run_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with open(run_copy / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "epo')  # a kill during a log write
    with caplog.at_level(logging.WARNING):
        summary = Trainer(tiny_config(tmp_path, run_copy, "optim.max_steps=4")).fit(resume=True)
    assert summary["step"] == 4
    assert "skipped 1 torn last line" in caplog.text
    records, torn = read_metrics(run_copy / "metrics.jsonl")
    assert torn == 0 and [record["step"] for record in records] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_corrupt_metrics_line_before_the_last_is_named(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"ste\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not valid JSON"):
        read_metrics(path)


def test_truncated_checkpoint_is_named_and_resume_uses_newest_intact(
    run_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last = run_copy / "checkpoints" / "step-00000003"
    weights = sorted((last / "model").glob("*.safetensors"))[0]
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(weights))):
        verify_checkpoint(last)
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(weights))):
        evaluate_checkpoint(last, [], [], "val", tmp_path / "eval")
    with caplog.at_level(logging.WARNING):
        summary = Trainer(tiny_config(tmp_path, run_copy, "optim.max_steps=4")).fit(resume=True)
    assert re.search(rf"skipped .*step-00000003.*{re.escape(weights.name)} is corrupt or truncated", caplog.text)
    assert summary["step"] == 4  # resumed from the intact best checkpoint (step 1), trained steps 2 to 4
    steps = [record["step"] for record in read_metrics(run_copy / "metrics.jsonl")[0]]
    assert steps == [1, 1, 2, 2, 3, 3, 4, 4]


def test_best_pointer_records_the_best_step(finished_run: Path) -> None:
    checkpoints = finished_run / "checkpoints"
    assert json.loads((checkpoints / "best.json").read_text()) == {"dir": "step-00000001", "step": 1}
    assert json.loads((checkpoints / "last.json").read_text()) == {"dir": "step-00000003", "step": 3}
    assert sorted(path.name for path in checkpoints.glob("step-*")) == ["step-00000001", "step-00000003"]
    results = json.loads((finished_run / "results.json").read_text())
    assert Path(results["best_checkpoint"]).name == "step-00000001"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.max_steps=0", "optim.max_steps"),
        ("optim.batch_size=-4", "optim.batch_size"),
        ("optim.batch_size=0", "optim.batch_size"),
        ("run.eval_every=0", "run.eval_every"),
        ("optim.lr=.inf", "optim.lr"),
        ("optim.lr=-1e-3", "optim.lr"),
        ("optim.betas=5", "optim.betas"),
        ("optim.betas=[0.9, 1.5]", "optim.betas"),
        ("optim.warmup_ratio=2", "optim.warmup_ratio"),
        ("run.save_every=0", "run.save_every"),
        ("run.patience=1.5", "run.patience"),
        ("model.lmm.llm.path=/some/lm", "model.tiny_lm"),
    ],
)
def test_config_rejects_bad_values(tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(key)):
        load_train_config([write_config(tmp_path)], [override])


def test_config_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("optim: {lr: [1\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: not valid YAML"):
        load_train_config([path])
