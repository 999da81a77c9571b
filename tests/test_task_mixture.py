"""A task mixture (`data.task: mixture`): exact and reproducible shares, each sample asking its own task's question,
the saliency loss from moment samples only, a tiny mixture trained and evaluated per task through the CLI, and the
base's card listing each task's accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_runs import SUBPROCESS_ENV, TINY_SYNTHETIC, TINY_TRAINING, config_in, read_jsonl, tiny_base_overrides

import vtc.world  # noqa: F401  (registers the synthetic data source)
from vtc.data.batch import collate
from vtc.data.choices import LETTERS
from vtc.eval.predict import score_mixture
from vtc.lmm.answers import format_choices, format_time_token_window
from vtc.lmm.config import DEFAULT_QUESTION
from vtc.lmm.model import build_model
from vtc.lmm.tiny import save_tiny_lm
from vtc.train.config import from_dict
from vtc.train.data import build_datasets
from vtc.train.mixture import mixture_counts
from vtc.train.trainer import task_model_config
from vtc.world.base import card_markdown
from vtc.world.synthetic import SyntheticMoments

MIXTURE = {"moment": 0.5, "choice": 0.25, "needle": 0.25}
TINY = {
    **TINY_TRAINING,
    "model": {
        **TINY_TRAINING["model"],
        "lmm": {**TINY_TRAINING["model"]["lmm"], "max_new_tokens": 4, "saliency_loss": 1.0},
    },
    "data": {**TINY_TRAINING["data"], "task": "mixture", "mixture": MIXTURE, "num_val": 4},
    "optim": {**TINY_TRAINING["optim"], "max_steps": 4, "batch_size": 4},
    "run": {"eval_every": 2, "log_every": 1, "progress": False},
}
TASK_METRICS = {"moment/mIoU", "moment/R1@0.5", "choice/accuracy", "choice/circular_accuracy", "needle/accuracy"}


def tiny_config(output_dir: Path, **data: object) -> dict:
    return config_in(TINY, output_dir, **data)


def test_mixture_counts_are_exact_shares_of_any_total():
    assert mixture_counts(MIXTURE, 3000) == {"moment": 1500, "choice": 750, "needle": 750}
    assert mixture_counts(MIXTURE, 10) == {"moment": 5, "choice": 3, "needle": 2}  # a tie: the first listed
    assert mixture_counts({"moment": 2, "choice": 1, "needle": 0}, 7) == {"moment": 5, "choice": 2, "needle": 0}
    shares = {"moment": 0.3, "choice": 0.3, "needle": 0.4}
    for total in range(40):
        counts = mixture_counts(shares, total)
        assert sum(counts.values()) == total and all(abs(counts[name] - total * shares[name]) < 1 for name in shares)


def test_splits_hold_exact_shares_reproducibly_each_task_from_its_own_variant():
    data = from_dict(tiny_config(Path("unused"), num_train=8)).data
    train, val = build_datasets(data)
    again, _ = build_datasets(data)
    tasks = [train.part(index)[0] for index in range(len(train))]
    assert tasks == ["moment"] * 4 + ["choice"] * 2 + ["needle"] * 2
    assert [val.part(index)[0] for index in range(len(val))] == ["moment", "moment", "choice", "needle"]
    for index in range(len(train)):
        sample, repeat = train[index], again[index]
        assert sample["qid"] == repeat["qid"] and torch.equal(sample["frames"], repeat["frames"])
        truth = SyntheticMoments(num_videos=8, variant=tasks[index], **TINY_SYNTHETIC)[index]
        assert sample["mixture_task"] == tasks[index] and sample["qid"] == truth["qid"]
        if tasks[index] == "moment":
            assert (sample["task"], sample["query"]) == ("moment", truth["query"]) and "answer" not in sample
        else:
            assert sample["task"] == "choice" and sample["answer"] == LETTERS[truth["answer"]]
            assert sample["query"] == format_choices(truth["question"], truth["options"])
    assert not {train[index]["qid"] for index in range(8)} & {val[index]["qid"] for index in range(4)}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("mixture_model")
    config = from_dict(tiny_config(folder))
    lm = save_tiny_lm(folder / "lm", **config.model.tiny_lm)
    lmm = {**config.model.lmm, "llm": {**config.model.lmm["llm"], "path": str(lm)}, "time_tokens": 4}
    torch.manual_seed(0)
    return build_model(lmm), build_datasets(config.data)[0]


def test_each_sample_is_asked_its_own_tasks_question_and_answer(tiny_model):
    model, train = tiny_model
    batch = collate([train[index] for index in (0, 4, 6)])  # moment, choice, needle
    builder = model.sequence_builder
    questions = builder.questions(batch["query"], batch["task"])
    assert questions[0] == DEFAULT_QUESTION.format(query=batch["query"][0])
    assert questions[1:] == batch["query"][1:] and questions[1].startswith("Question: what does the")
    assert questions[2].startswith("Question: which shape flashed")
    assert builder.questions(batch["query"]) == [DEFAULT_QUESTION.format(query=query) for query in batch["query"]]
    answers = builder.answer_text(batch)
    assert answers[1:] == batch["answer"][1:] and answers[1] in LETTERS and batch["window"][1:] == [None, None]
    start, end = batch["window"][0]
    assert answers[0] == format_time_token_window(start, end, batch["duration"][0], 4) and "<t" in answers[0]


def test_saliency_loss_learns_from_the_moment_samples_only(tiny_model, monkeypatch):
    model, train = tiny_model
    config = task_model_config(model.config, "mixture")  # kept, not refused as for data.task 'choice'
    assert config["saliency_loss"] == 1.0
    seen: list[tuple[int, list]] = []
    original = model.saliency_head.loss

    def recorded(hidden, times, windows):
        seen.append((hidden.shape[0], list(windows)))
        return original(hidden, times, windows)

    monkeypatch.setattr(model.saliency_head, "loss", recorded)
    mixed = collate([train[index] for index in (0, 4, 1, 6)])  # moment, choice, moment, needle
    loss = model(mixed)
    assert seen == [(2, [mixed["window"][0], mixed["window"][2]])]
    loss.backward()
    assert model.saliency_head.weight.grad is not None
    model.zero_grad()
    questions_only = collate([train[index] for index in (4, 6)])
    assert torch.isfinite(model(questions_only)) and len(seen) == 1  # no moment row: no saliency term


def test_cli_trains_a_mixture_and_evaluates_each_task(tmp_path):
    config = tmp_path / "mixture.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path / "run")))
    train = [sys.executable, "-m", "vtc.cli", "train", "--config", str(config)]
    subprocess.run(train, env=SUBPROCESS_ENV, check=True, capture_output=True, text=True)
    run = tmp_path / "run"
    summary = json.loads((run / "results.json").read_text())
    assert "best_mean_task_score" in summary
    validation = [line for line in read_jsonl(run / "metrics.jsonl") if line.get("split") == "val"]
    assert [line["step"] for line in validation] == [2, 4] and all(set(line) >= TASK_METRICS for line in validation)
    assert validation[0]["choice/num_questions"] == 4 and validation[0]["moment/num_queries"] == 2  # 4 rotations
    out = tmp_path / "eval"
    evaluate = [sys.executable, "-m", "vtc.cli", "evaluate", "--checkpoint", str(run), "--out", str(out)]
    subprocess.run(evaluate, env=SUBPROCESS_ENV, check=True, capture_output=True, text=True)
    metrics = json.loads((out / "metrics.json").read_text())
    best = json.loads((run / "checkpoints" / "best.json").read_text())["step"]
    assert metrics == {key: value for key, value in validation[best // 2 - 1].items() if key not in ("step", "split")}
    primary = (metrics["moment/mIoU"], metrics["choice/accuracy"], metrics["needle/accuracy"])
    assert metrics["mean_task_score"] == round(sum(primary) / 3, 2)
    records = read_jsonl(out / "predictions.jsonl")
    assert {record["mixture_task"] for record in records} == {"moment", "choice", "needle"}
    assert all(("pred_saliency_scores" in record) == (record["task"] == "moment") for record in records)


def test_score_mixture_scores_each_task_with_its_own_scorer():
    moment = {"qid": "m", "pred_relevant_windows": [[0, 2, 1.0]], "relevant_windows": [[0, 4]]}
    choice = {"qid": "c", "pred": 1, "answer": 1, "options": ["a", "b"], "question": "?", "circular_group": "c"}
    records = [{**moment, "task": "moment", "mixture_task": "moment"}]
    records += [{**choice, "task": "choice", "mixture_task": "needle"}]
    metrics = score_mixture(records)
    assert metrics["moment/mIoU"] == 50.0 and metrics["needle/accuracy"] == 100.0
    assert metrics["mean_task_score"] == 75.0 and next(iter(metrics)) == "mean_task_score"
    with pytest.raises(ValueError, match="no prediction records"):
        score_mixture([])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "files", "train": "t.jsonl", "val": "v.jsonl"}, "built by the synthetic source"),
        ({"synthetic": {**TINY_SYNTHETIC, "variant": "choice"}}, "data.synthetic.variant is set"),
        ({"mixture": {"moment": 1.0, "dance": 1.0}}, r"names \['dance'\]"),
        ({"num_val": 2}, r"without a sample"),
    ],
)
def test_a_mixture_the_data_cannot_give_is_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        build_datasets(from_dict(tiny_config(tmp_path, **changes)).data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "moment"}, "data.mixture is set but data.task is 'moment'"),
        ({"mixture": None}, "needs data.mixture"),
        ({"mixture": {"moment": -1}}, "share >= 0"),
        ({"mixture": {"moment": 0}}, "a share > 0"),
    ],
)
def test_a_mixture_config_that_contradicts_itself_is_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        from_dict(tiny_config(tmp_path, **changes))
    hf = {**tiny_config(tmp_path), "model": {"hf": {"path": "x"}}}
    with pytest.raises(ValueError, match=r"model\.hf learns one task"):
        from_dict(hf)


def test_vtc_base_mixture_card_reports_each_tasks_accuracy(tmp_path):
    from vtc.cli import main

    tiny = tiny_base_overrides(tmp_path / "cache", num_train=8, num_val=4)
    command = ["base", "--mixture", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "base"), "--num-test", "2"]
    assert main([*command, *[item for value in tiny for item in ("--set", value)]]) == 0
    card = json.loads((tmp_path / "base" / "base.json").read_text())["card"]
    assert card["tasks"] == {"moment": 0.5, "choice": 0.25, "needle": 0.25}
    assert set(card["test"]) == {"text", "saliency", "blind"} and set(card["questions"]) == {"choice", "needle"}
    assert set(card["questions"]["needle"]) == {"text", "likelihood"}
    likelihood = card["questions"]["needle"]["likelihood"]
    assert set(likelihood) == {"accuracy", "circular_accuracy", "num_invalid"} and likelihood["num_invalid"] == 0
    assert card["config"]["files"][1] == "configs/data/synthetic_mixture.yaml"
    readme = (tmp_path / "base" / "README.md").read_text()
    assert all(row in readme for row in ("| text |", "| choice | likelihood |", "| needle | text |", "moment (0.5)"))
    assert "not reported" not in readme
    saved = json.loads((tmp_path / "base" / "base.json").read_text())
    weights = (tmp_path / "base" / "parts.safetensors").read_bytes()
    saved["card"]["questions"] = {"choice": {"text": saved["card"]["questions"]["choice"]["text"]}}
    (tmp_path / "base" / "base.json").write_text(json.dumps(saved))
    (tmp_path / "base" / "README.md").write_text("stale")
    assert main(["base", "--rescore", str(tmp_path / "base")]) == 0
    rescored = json.loads((tmp_path / "base" / "base.json").read_text())
    assert rescored["card"]["questions"] == card["questions"] and rescored["model"] == saved["model"]
    assert (tmp_path / "base" / "README.md").read_text() == readme
    assert (tmp_path / "base" / "parts.safetensors").read_bytes() == weights


def test_a_moment_only_card_says_it_learned_no_questions():
    card = {
        "model": "m",
        "command": "vtc base",
        "steps": 1,
        "train_seconds": 1.0,
        "data": "d",
        "test_videos": 2,
        "test": {"text": {"mIoU": 50.0, "R1@0.5": 50.0, "R1@0.7": 0.0}},
    }
    readme = card_markdown(card)
    assert "| text | 50.00 |" in readme and "moment (1)" in readme and "not reported" in readme
