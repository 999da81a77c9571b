"""The multiple-choice path: samples, circular asking, scoring, training and `vtc evaluate --checkpoint` on the
synthetic `choice` variant and on a QA file in every published layout; saliency scores of moment predictions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_runs import SUBPROCESS_ENV, TINY_SYNTHETIC, TINY_TRAINING, config_in, read_jsonl

import vtc.world  # noqa: F401  (registers the synthetic data source)
from vtc.data.choices import LETTERS, parse_choice
from vtc.eval.cli import evaluate_files
from vtc.eval.predict import asked_variants, score_choices
from vtc.lmm.answers import format_choices
from vtc.train.config import from_dict
from vtc.train.data import check_data
from vtc.train.evaluate import evaluate_checkpoint
from vtc.train.trainer import Trainer
from vtc.world.cli import write_synthetic
from vtc.world.source import SyntheticSamples
from vtc.world.synthetic import SyntheticMoments

TINY = {
    **TINY_TRAINING,
    "model": {**TINY_TRAINING["model"], "lmm": {**TINY_TRAINING["model"]["lmm"], "max_new_tokens": 3}},
    "data": {**TINY_TRAINING["data"], "task": "choice", "synthetic": {**TINY_SYNTHETIC, "variant": "choice"}},
    "optim": {**TINY_TRAINING["optim"], "max_steps": 4},
    "run": {"eval_every": 2, "log_every": 1, "progress": False},
}
METRIC_KEYS = {"accuracy", "num_questions", "num_invalid", "circular_accuracy", "num_groups"}


def tiny_config(output_dir: Path, **data: object) -> dict:
    return config_in(TINY, output_dir, **data)


def check_records(records: list[dict], metrics: dict) -> None:
    """Each record's `pred` is the option its text names, and `num_invalid` counts the unreadable ones."""
    assert all(record["pred"] == parse_choice(record["text"], record["options"]) for record in records)
    assert metrics["num_invalid"] == sum(record["pred"] is None for record in records)
    assert set(metrics) == METRIC_KEYS and metrics["num_questions"] == len(records)


@pytest.mark.parametrize("variant", ["choice", "needle"])
def test_synthetic_choice_samples_ask_the_rendered_question(variant):
    moments = SyntheticMoments(num_videos=2, variant=variant, **TINY_SYNTHETIC)
    sample = SyntheticSamples(moments, num_frames=2, task="choice")[1]
    truth = moments[1]
    assert sample["query"] == format_choices(truth["question"], truth["options"])
    assert sample["options"] == truth["options"] and sample["answer_index"] == truth["answer"]
    assert sample["answer"] == LETTERS[truth["answer"]] and "window" not in sample
    assert sample["frames"].shape[0] == 2
    moment_sample = SyntheticSamples(moments, num_frames=2)[1]
    assert moment_sample["query"] == truth["query"] and "answer" not in moment_sample
    with pytest.raises(ValueError, match="'moment' variant"):
        SyntheticSamples(SyntheticMoments(num_videos=1, **TINY_SYNTHETIC), num_frames=2, task="choice")


def test_a_question_answered_with_the_option_text_asks_for_it_in_every_rotation():
    moments = SyntheticMoments(num_videos=2, variant="needle", **TINY_SYNTHETIC)
    sample = SyntheticSamples(moments, num_frames=2, task="choice", choice_answer="text")[1]
    truth = moments[1]
    assert sample["answer"] == truth["options"][truth["answer"]] and sample["answer_with"] == "text"
    assert sample["query"].endswith("Answer with the option's text from the given choices directly.")
    assert sample["query"] != format_choices(truth["question"], truth["options"])
    variants = asked_variants(sample, circular=True)
    assert {variant["answer"] for variant in variants} == {sample["answer"]}
    assert all(variant["query"].endswith("option's text from the given choices directly.") for variant in variants)
    assert [parse_choice(variant["answer"], variant["options"]) for variant in variants] == [
        variant["answer_index"] for variant in variants
    ]
    with pytest.raises(ValueError, match="answer_with must be one of"):
        format_choices("which?", ["x", "y"], answer_with="number")


def test_questions_are_asked_in_every_rotation_unless_already_grouped():
    sample = {"qid": "q", "question": "which?", "options": ["w", "x", "y", "z"], "answer_index": 1, "frames": []}
    variants = asked_variants(sample, circular=True)
    assert [variant["qid"] for variant in variants] == [f"q#rot{k}" for k in range(4)]
    assert [variant["options"][variant["answer_index"]] for variant in variants] == ["x"] * 4
    assert [variant["answer"] for variant in variants] == ["B", "A", "D", "C"]
    assert variants[1]["query"] == format_choices("which?", ["x", "y", "z", "w"])
    assert {variant["circular_group"] for variant in variants} == {"q"}
    assert all(variant["frames"] is sample["frames"] for variant in variants)
    assert asked_variants(sample, circular=False) == [sample]
    grouped = {**sample, "circular_group": "vnbench-question"}
    assert asked_variants(grouped, circular=True) == [grouped]


def test_score_counts_rotations_groups_and_unreadable_answers():
    def record(qid: str, group: str, pred: int | None, answer: int = 0) -> dict:
        return {
            "qid": qid,
            "question": "?",
            "options": ["a", "b"],
            "answer": answer,
            "pred": pred,
            "circular_group": group,
        }

    records = [
        record("1#rot0", "1", 0),
        record("1#rot1", "1", 1, 1),
        record("2#rot0", "2", 0),
        record("2#rot1", "2", None),
    ]
    metrics = score_choices(records)
    assert metrics == {
        "accuracy": 75.0,
        "num_questions": 4,
        "num_invalid": 1,
        "circular_accuracy": 50.0,
        "num_groups": 2,
    }
    with pytest.raises(ValueError, match="predicted twice"):
        score_choices([records[0], records[0]])


def test_cli_trains_and_evaluates_the_synthetic_choice_variant(tmp_path):
    config = tmp_path / "choice.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path / "run")))
    train = [sys.executable, "-m", "vtc.cli", "train", "--config", str(config)]
    subprocess.run(train, env=SUBPROCESS_ENV, check=True, capture_output=True, text=True)
    run = tmp_path / "run"
    summary = json.loads((run / "results.json").read_text())
    assert "best_accuracy" in summary and "best_mIoU" not in summary
    validation = [line for line in read_jsonl(run / "metrics.jsonl") if line.get("split") == "val"]
    assert [line["step"] for line in validation] == [2, 4] and all(set(line) >= METRIC_KEYS for line in validation)
    out = tmp_path / "eval"
    evaluate = [sys.executable, "-m", "vtc.cli", "evaluate", "--checkpoint", str(run), "--out", str(out)]
    result = subprocess.run(evaluate, env=SUBPROCESS_ENV, check=True, capture_output=True, text=True)
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert (metrics["num_questions"], metrics["num_groups"]) == (8, 2)  # 2 questions x 4 rotations
    best = json.loads((run / "checkpoints" / "best.json").read_text())["step"]
    assert metrics == {key: value for key, value in validation[best // 2 - 1].items() if key not in ("step", "split")}
    records = read_jsonl(out / "predictions.jsonl")
    assert [record["qid"].rsplit("#", 1)[1] for record in records[:4]] == ["rot0", "rot1", "rot2", "rot3"]
    check_records(records, metrics)
    likely = [*evaluate[:-1], str(tmp_path / "likely"), "--choice-readout", "likelihood"]
    result = subprocess.run(likely, env=SUBPROCESS_ENV, check=True, capture_output=True, text=True)
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    records = read_jsonl(tmp_path / "likely" / "predictions.jsonl")
    assert metrics["num_invalid"] == 0 and metrics["num_questions"] == 8
    assert all(record["text"] in (*LETTERS[:4], *record["options"]) for record in records)
    assert all(record["pred"] == parse_choice(record["text"], record["options"]) for record in records)


def layout_records(question: dict, layout: str) -> list[dict]:
    """One question of `vtc data synth`'s qa.jsonl as a published layout writes it."""
    options, answer, vid = question["options"], question["answer"], question["vid"]
    if layout == "jsonl":
        return [question]
    if layout == "videomme":
        lettered = [f"{LETTERS[index]}. {option}" for index, option in enumerate(options)]
        common = {"video_id": "001", "videoID": vid, "question_id": f"{vid}-1", "duration": "short"}
        return [{**common, "question": question["question"], "options": lettered, "answer": LETTERS[answer]}]
    if layout in ("mlvu", "mvbench"):
        extra = {"duration": question["duration"], "question_type": "plotQA"} if layout == "mlvu" else {}
        candidates = {"candidates": options, "answer": options[answer]}
        return [{"video": f"{vid}.mp4", "question": question["question"], **candidates, **extra}]
    return [  # vnbench: four tries, the options rotated
        {
            "video": f"VNBench/video/{vid}.mp4",
            "question": question["question"],
            "options": options[shift:] + options[:shift],
            "gt": options[answer],
            "type": "ret_insert1",
            "try": shift,
        }
        for shift in range(len(options))
    ]


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("synth")
    write_synthetic(SyntheticMoments(num_videos=6, variant="choice", seed=5, **TINY_SYNTHETIC), folder)
    return folder, read_jsonl(folder / "qa.jsonl")


@pytest.mark.parametrize("layout", ["jsonl", "videomme", "mlvu", "mvbench", "vnbench"])
def test_trains_and_evaluates_a_qa_file_in_each_layout(tmp_path, synthetic_files, layout):
    folder, questions = synthetic_files
    paths = {}
    for split, chosen in (("train", questions[:4]), ("val", questions[4:])):
        records = [record for question in chosen for record in layout_records(question, layout)]
        paths[split] = tmp_path / f"{split}.json"
        paths[split].write_text(json.dumps(records))
    data = {
        "source": "files",
        "train": str(paths["train"]),
        "val": str(paths["val"]),
        "video_dir": str(folder / "videos"),
    }
    config = tiny_config(tmp_path / "run", synthetic={}, **data)
    assert check_data(from_dict(config).data)["splits"]["val"]["items"] == (8 if layout == "vnbench" else 2)
    Trainer(from_dict(config)).fit()
    data_config = tmp_path / "data.yaml"
    data_config.write_text(yaml.safe_dump({"data": config["data"]}))
    metrics = evaluate_checkpoint(tmp_path / "run", [data_config], [], "val", tmp_path / "eval")
    records = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert (metrics["num_questions"], metrics["num_groups"]) == (8, 2)  # rotated by vtc, or VNBench's own tries
    assert all(("#rot" in record["qid"]) == (layout != "vnbench") for record in records)
    assert [record["options"][record["answer"]] for record in records[:4]] == [
        questions[4]["options"][questions[4]["answer"]]
    ] * 4
    check_records(records, metrics)


def test_choice_task_refuses_a_saliency_loss(tmp_path):
    config = tiny_config(tmp_path / "run")
    config["model"]["lmm"]["saliency_loss"] = 1.0
    with pytest.raises(ValueError, match="saliency_loss learns moment windows"):
        Trainer(from_dict(config)).fit()


def test_moment_evaluation_writes_clip_saliency_for_the_highlight_metrics(tmp_path):
    config = tiny_config(tmp_path / "run", task="moment", synthetic=TINY_SYNTHETIC)
    config["model"]["lmm"] |= {"saliency_loss": 1.0, "max_new_tokens": 6}
    config["optim"]["max_steps"] = 2
    Trainer(from_dict(config)).fit()
    metrics = evaluate_checkpoint(tmp_path / "run", [], [], "val", tmp_path / "eval")
    records = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert metrics["num_queries"] == 2 and all(len(record["pred_saliency_scores"]) == 2 for record in records)
    ground_truth = tmp_path / "qvhighlights.jsonl"  # 4 s videos: clips 0 and 1, clip 1 salient
    ground_truth.write_text(
        "".join(
            json.dumps({**record, "duration": 4.0, "relevant_clip_ids": [1], "saliency_scores": [[4, 4, 4]]}) + "\n"
            for record in records
        )
    )
    highlights = evaluate_files(tmp_path / "eval" / "predictions.jsonl", ground_truth)
    hits = [float(record["pred_saliency_scores"][1] > record["pred_saliency_scores"][0]) for record in records]
    assert highlights["HL-num_queries"] == 2 and highlights["HL-min-VeryGood-Hit1"] == 100 * sum(hits) / 2
