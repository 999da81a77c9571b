"""`vtc train` with `model.hf`: a compressor (and LoRA adapters on the LM) trained inside tiny random LLaVA-OneVision,
Qwen2.5-VL and Qwen3-VL loaded by path, on the tiny synthetic world; only those weights move, only those are saved,
a run resumes from them, and they load back to the same logits; `vtc evaluate --checkpoint` scores the windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_runs import TINY_SYNTHETIC
from tiny_vlm import HOSTS, TinyProcessor, save_tiny_vlm

import vtc.world  # noqa: F401  (registers the synthetic data source)
from vtc.cli import main
from vtc.data.batch import collate
from vtc.integrations.training import CONFIG_NAME, WEIGHTS_NAME, HFVideoLLM, hf_config, is_adapter
from vtc.train.config import from_dict
from vtc.train.trainer import Trainer

pytest.importorskip("peft")
COMPRESSOR = {"name": "tokenlearner", "num_tokens": 2, "bottleneck": 8}  # 2 learned tokens a frame: any host


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_training")
    return {host: save_tiny_vlm(root / host, host) for host in HOSTS}


@pytest.fixture(autouse=True)
def tiny_processor(monkeypatch):
    """`AutoProcessor.from_pretrained` gives the tiny stand-in processor (the real ones need torchvision)."""
    import transformers

    def from_pretrained(folder, **options):
        assert options == {"local_files_only": True}
        host = json.loads((Path(folder) / "config.json").read_text())["model_type"]
        host = {"llava_onevision": "llava_onevision", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl"}[host]
        return TinyProcessor(transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True), host)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", from_pretrained)


def raw_config(folder: Path, output: Path, max_steps: int = 2, **hf) -> dict:
    """A `vtc train` config of `max_steps` steps on 4 tiny synthetic videos of 2 frames, validating at the end."""
    return {
        "model": {"hf": {"path": str(folder), "compressor": COMPRESSOR, "lora": {"r": 4}, "max_new_tokens": 6, **hf}},
        "data": {"source": "synthetic", "synthetic": TINY_SYNTHETIC, "num_train": 4, "num_val": 2, "num_frames": 2},
        "optim": {"lr": 1e-2, "batch_size": 2, "max_steps": max_steps, "warmup_ratio": 0.0},
        "run": {"output_dir": str(output), "eval_every": 2, "save_every": 1, "log_every": 1, "progress": False},
    }


def recorded_builds(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The host's whole state right after each `HFVideoLLM.build` (before any training step)."""
    states = []
    build = HFVideoLLM.build

    def recording(*args, **kwargs):
        model = build(*args, **kwargs)
        states.append({name: tensor.detach().clone() for name, tensor in model.model.state_dict().items()})
        return model

    monkeypatch.setattr(HFVideoLLM, "build", staticmethod(recording))
    return states


def is_trained(name: str) -> bool:
    return is_adapter(name) or "video_token_compression.compressor." in name


@pytest.mark.parametrize("host", HOSTS)
def test_training_moves_saves_and_reloads_only_the_compressor_and_the_adapters(folders, tmp_path, monkeypatch, host):
    initial = recorded_builds(monkeypatch)
    trainer = Trainer(from_dict(raw_config(folders[host], tmp_path / "run")))
    summary = trainer.fit()
    model = trainer.model
    assert summary["step"] == 2 and 0 <= summary["best_mIoU"] <= 1
    state = model.model.state_dict()
    moved = {name for name, tensor in state.items() if not torch.equal(tensor, initial[0][name])}
    assert moved and all(is_trained(name) for name in moved)
    assert any(is_adapter(name) for name in moved) and any("compressor" in name for name in moved)
    assert {name for name, p in model.named_parameters() if p.requires_grad} == {
        f"model.{name}" for name, _ in model.model.named_parameters() if is_trained(name)
    }

    saved = Path(summary["last_checkpoint"]) / "model"
    assert sorted(path.name for path in saved.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    weights = load_file(saved / WEIGHTS_NAME)
    compressor = {f"compressor.{name}" for name in model.compression.compressor.state_dict()}
    adapters = {name for name in state if is_adapter(name)}
    assert set(weights) == compressor | adapters

    batch = collate([trainer.val_data[index] for index in range(2)])
    reloaded = HFVideoLLM.from_pretrained(saved).eval()
    with torch.no_grad():
        assert torch.equal(reloaded.outputs(batch).logits, model.eval().outputs(batch).logits)


def test_a_resumed_run_continues_as_an_uninterrupted_one(folders, tmp_path, monkeypatch):
    config = from_dict(raw_config(folders["qwen2_5_vl"], tmp_path / "run", max_steps=3))
    straight = Trainer(from_dict(raw_config(folders["qwen2_5_vl"], tmp_path / "straight", max_steps=3)))
    straight.fit()
    step = Trainer.train_step

    def killed_at_step_3(trainer):
        if trainer.step == 2:
            raise KeyboardInterrupt
        return step(trainer)

    monkeypatch.setattr(Trainer, "train_step", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config).fit()
    monkeypatch.setattr(Trainer, "train_step", step)
    resumed = Trainer(config)
    assert resumed.fit(resume=True)["step"] == 3
    expected, got = straight.model.trained_state(), resumed.model.trained_state()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3]


def test_vtc_train_and_evaluate_a_budgeted_compressor_by_config_file(folders, tmp_path, capsys):
    config = raw_config(folders["llava_onevision"], tmp_path / "run", budget=0.25)
    (tmp_path / "hf.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "hf.yaml")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((Path(summary["best_checkpoint"]) / "model" / CONFIG_NAME).read_text())
    assert saved["budget"] is None and saved["compressor"]["num_tokens"] == 1  # 0.25 of 2 frames x 2 x 2 tokens
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["mIoU"] <= 1
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all("text" in record for record in records)


def test_bad_hf_sections_are_refused(folders):
    with pytest.raises(ValueError, match="unknown keys \\['lr'\\]"):
        hf_config({"path": "x", "lr": 1}, "moment")
    with pytest.raises(ValueError, match="budget"):
        hf_config({"path": "x", "budget": 2}, "moment")
    with pytest.raises(ValueError, match="dtype"):
        hf_config({"path": "x", "dtype": "bf16"}, "moment")
    with pytest.raises(ValueError, match=r"do not also set model\.tiny_lm"):
        from_dict({"model": {"hf": {"path": "x"}, "tiny_lm": {"kind": "t5"}}})
    assert hf_config({"path": "x"}, "choice")["question"] == "{query}"


def test_the_loss_reads_only_the_answer_tokens(folders):
    config = {"path": str(folders["qwen3_vl"]), "compressor": COMPRESSOR, "dtype": "bfloat16"}
    model = HFVideoLLM.build(config, "moment")
    sample = {
        "qid": "a",
        "frames": torch.zeros(2, 16, 16, 3, dtype=torch.uint8),
        "timestamps": torch.tensor([0.5, 1.5]),
    }
    batch = collate([{**sample, "query": "walk", "duration": 2.0, "window": (0.5, 1.5)}])
    inputs = model.inputs(batch, with_answers=True)
    tokenizer = model.processor.tokenizer
    answer = inputs["labels"][0][inputs["labels"][0] != -100]
    assert tokenizer.decode(answer, skip_special_tokens=True) == "It starts at 0.5 and ends at 1.5 seconds."
    prompt = tokenizer.decode(inputs["input_ids"][0][: -len(answer)])
    assert prompt.count("<|video_pad|>") == 2 * 1 and "<1.0 seconds>" in prompt and "Query: walk" in prompt
    assert model.model.lm_head.weight.dtype == torch.bfloat16 and torch.isfinite(model(batch))


def test_the_example_config_loads():
    root = Path(__file__).resolve().parents[1]
    config = from_dict(yaml.safe_load((root / "configs/model/hf_qwen2_5_vl.yaml").read_text()))
    assert hf_config(config.model.hf, config.data.task)["compressor"]["name"] == "tokenlearner"


def test_multiple_choice_training_scores_accuracy(folders, tmp_path):
    raw = raw_config(folders["qwen2_5_vl"], tmp_path / "run")
    raw["data"] |= {"task": "choice", "synthetic": {**TINY_SYNTHETIC, "variant": "choice"}}
    trainer = Trainer(from_dict(raw))
    summary = trainer.fit()
    assert trainer.model.config["question"] == "{query}" and 0 <= summary["best_accuracy"] <= 1
