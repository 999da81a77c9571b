"""`vtc predict` and `Predictor`: one encode, many answers, for a vtc checkpoint and for Hugging Face video LLMs with a
compressor inside; each answer carries its window, the video tokens the LLM received and the time of each stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_hf import save_causal_lm
from tiny_vlm import TinyProcessor, save_tiny_vlm

from vtc.cli import main
from vtc.integrations.predictor import STAGES, HFBackend, Predictor, VideoLMMBackend
from vtc.lmm.model import VideoLMM, build_model
from vtc.video import VideoClip

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "moviepy_chaplin.mp4"
QUERIES = ["find the person", "the person open a door", "walk"]
ENCODER = {"type": "tiny", "image_size": 16, "patch_size": 8, "dim": 16, "depth": 1, "heads": 2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny `VideoLMM` (tiny encoder, 2 x 2 patches a frame, llama LM) saved as a checkpoint."""
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    config = {
        "encoder": ENCODER,
        "llm": {"path": str(save_causal_lm(root / "llama", "llama")), "mode": "frozen"},
        "num_frames": 4,
        "max_new_tokens": 6,
        "compressor": {"name": "none"},
    }
    build_model(config).save_pretrained(root / "checkpoint")
    return root / "checkpoint"


def clip(frames: int = 4) -> VideoClip:
    generator = torch.Generator().manual_seed(0)
    return VideoClip(
        frames=torch.randint(0, 256, (frames, 32, 32, 3), dtype=torch.uint8, generator=generator),
        timestamps=torch.arange(frames, dtype=torch.float64) + 0.5,
        duration=float(frames),
        fps=1.0,
        path="random",
    )


def count_encodes(predictor: Predictor) -> list[int]:
    calls = []
    encode = predictor.backend.encode
    predictor.backend.encode = lambda *args: calls.append(1) or encode(*args)
    return calls


def test_one_encode_answers_three_queries_of_a_checkpoint(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, compressor="tome", budget=0.5)
    assert isinstance(predictor.backend, VideoLMMBackend)
    calls = count_encodes(predictor)
    encoded = predictor.encode_video(clip())
    predictions = [predictor.answer(query) for query in QUERIES]
    assert calls == [1]
    assert encoded.video_tokens == 8  # half of 4 frames x 4 patches
    assert predictor.backend.model.compressor.registry_name == "tome"
    for prediction in predictions:
        assert isinstance(prediction.text, str) and prediction.video_tokens == 8
        assert set(prediction.seconds) == set(STAGES) and min(prediction.seconds.values()) >= 0
        assert prediction.seconds["decode"] == encoded.seconds["decode"]


def test_answer_before_a_video_is_refused(checkpoint):
    with pytest.raises(ValueError, match="encode_video"):
        Predictor.from_pretrained(checkpoint).answer("walk")


@pytest.mark.parametrize("host", ["llava_onevision", "qwen2_5_vl"])
def test_hugging_face_models_encode_once_at_the_budget(tmp_path, host):
    from transformers import AutoTokenizer

    folder = save_tiny_vlm(tmp_path / host, host)
    processor = TinyProcessor(AutoTokenizer.from_pretrained(folder, local_files_only=True), host)
    predictor = Predictor.from_pretrained(folder, "random", budget=0.25, max_new_tokens=4, processor=processor)
    assert isinstance(predictor.backend, HFBackend)
    calls = count_encodes(predictor)
    encoded = predictor.encode_video(clip())
    answers = [predictor.answer(query) for query in QUERIES]
    uncompressed = 4 * 4 if host == "llava_onevision" else 2 * 16  # pooled 2 x 2 a frame, or 2 x (4 x 4) merged
    newline = int(host == "llava_onevision")
    assert calls == [1]
    assert encoded.video_tokens == uncompressed // 4 + newline
    assert predictor.backend.compression.compressor.config["keep_tokens"] == uncompressed // 4
    assert all(len(answer.text) >= 0 and answer.video_tokens == encoded.video_tokens for answer in answers)
    assert set(answers[0].seconds) == set(STAGES)


@pytest.mark.parametrize("host, compressor", [("qwen2_5_vl", "tome"), ("qwen3_vl", "avgpool2d")])
def test_the_compressed_prompt_generates_what_the_models_own_call_generates(tmp_path, host, compressor):
    from transformers import AutoTokenizer

    folder = save_tiny_vlm(tmp_path / "qwen", host)
    processor = TinyProcessor(AutoTokenizer.from_pretrained(folder, local_files_only=True), host)
    predictor = Predictor.from_pretrained(folder, compressor, budget=0.5, max_new_tokens=5, processor=processor)
    video = clip()
    video.timestamps = torch.tensor([0.0, 0.0, 2.0, 2.0], dtype=torch.float64)  # patches at 0 and 2 s, as tiny's
    predictor.encode_video(video)
    cached = predictor.answer("walk").text
    backend = predictor.backend
    prompt = backend.prompt("walk")
    if host == "qwen3_vl":  # its processor writes the vision marks of each temporal patch itself
        prompt = prompt.replace("<|vision_start|><|video_pad|><|vision_end|>", "<|video_pad|>")
    inputs = processor(text=[prompt], videos=[video.frames.numpy()])  # patched: the compressed count
    with torch.no_grad():
        output = backend.model.generate(**inputs, max_new_tokens=5, do_sample=False)
    direct = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert cached == direct


@pytest.mark.skipif(not VIDEO.exists(), reason=f"{VIDEO} (the shared real video) is absent")
def test_vtc_predict_prints_answers_tokens_and_stage_times(checkpoint, capsys):
    code = main(
        ["predict", str(VIDEO), *QUERIES, "--model", str(checkpoint), "--compressor", "random", "--budget", "0.5"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("answer: ") == 3 and out.count("window: ") == 3
    assert out.count("video tokens: 8") == 3
    assert out.count("seconds: decode") == 3 and "generate" in out


def test_a_budget_alone_keeps_the_checkpoints_method_and_refuses_a_trained_one(checkpoint, tmp_path):
    predictor = Predictor.from_pretrained(checkpoint, budget=1.0)
    assert predictor.encode_video(clip()).video_tokens == 16  # the checkpoint's `none`: 4 frames x 4 patches
    assert predictor.backend.model.compressor.registry_name == "none"
    trained = build_model(
        {**VideoLMM.from_pretrained(checkpoint).config, "compressor": {"name": "tokenlearner", "num_tokens": 2}}
    )
    trained.save_pretrained(tmp_path / "trained")
    with pytest.raises(ValueError, match="tokenlearner is trained"):
        Predictor.from_pretrained(tmp_path / "trained", budget=0.5)


def tiny_processor_for(monkeypatch, host: str) -> None:
    """Make `AutoProcessor.from_pretrained` (what `vtc predict` loads) give the tiny stand-in processor of `host`."""
    import transformers

    def from_pretrained(folder, **options):
        assert options == {"local_files_only": True}
        return TinyProcessor(transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True), host)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", from_pretrained)


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory) -> Path:
    return save_tiny_vlm(tmp_path_factory.mktemp("qwen3") / "qwen3_vl", "qwen3_vl")


@pytest.mark.skipif(not VIDEO.exists(), reason=f"{VIDEO} (the shared real video) is absent")
def test_qwen3_answers_three_queries_about_a_real_video_with_one_encode(qwen3, monkeypatch):
    tiny_processor_for(monkeypatch, "qwen3_vl")
    predictor = Predictor.from_pretrained(qwen3, "avgpool2d", budget=0.25, num_frames=4, max_new_tokens=4)
    calls = count_encodes(predictor)
    kept = []
    predictor.encode_video(VIDEO)  # attaches the compressor at the first video
    predictor.backend.compression.compressor.register_forward_hook(lambda module, args, out: kept.append(out))
    encoded = predictor.encode_video(VIDEO)
    answers = [predictor.answer(query) for query in QUERIES]
    assert calls == [1, 1]
    assert encoded.video_tokens == kept[0].tokens.shape[1] == 2 * 4  # 2 temporal patches, 4 x 4 pooled 2 x 2
    state = encoded.state[3]
    assert state.count("<|vision_start|>") == 2 and state.count("<|video_pad|>") == 8 and " seconds>" in state
    for answer in answers:
        assert isinstance(answer.text, str) and answer.video_tokens == 8
        assert set(answer.seconds) == set(STAGES) and min(answer.seconds.values()) >= 0


def test_qwen3_timestamps_are_the_mean_time_of_each_temporal_patch(qwen3, monkeypatch):
    tiny_processor_for(monkeypatch, "qwen3_vl")
    predictor = Predictor.from_pretrained(qwen3, max_new_tokens=2)  # the `none` compressor
    placeholders = predictor.encode_video(clip(4)).state[3]  # frames at 0.5, 1.5, 2.5, 3.5 s
    run = f"<|vision_start|>{'<|video_pad|>' * 16}<|vision_end|>"
    assert placeholders == f"<1.0 seconds>{run}<3.0 seconds>{run}"
    with pytest.raises(ValueError, match="same number of tokens in every frame"):
        Predictor.from_pretrained(qwen3, "random", budget=0.25).encode_video(clip(4))


@pytest.mark.skipif(not VIDEO.exists(), reason=f"{VIDEO} (the shared real video) is absent")
def test_vtc_predict_answers_with_a_qwen3_model(qwen3, monkeypatch, capsys):
    tiny_processor_for(monkeypatch, "qwen3_vl")
    args = ["--model", str(qwen3), "--compressor", "avgpool2d", "--budget", "0.25", "--num-frames", "4"]
    code = main(["predict", str(VIDEO), *QUERIES, *args, "--max-new-tokens", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("answer: ") == 3 and out.count("video tokens: 8") == 3
    assert out.count("seconds: decode") == 3 and out.count("compress") == 3 and "generate" in out
