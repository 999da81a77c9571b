"""Compressors inside Hugging Face video LLMs (`vtc.integrations`): tiny random LLaVA-OneVision, Qwen2.5-VL and
Qwen3-VL saved to a folder and loaded by path; the `none` compressor changes nothing, another one hands the LLM exactly
its tokens at their uncompressed positions, and generation agrees with and without the KV cache."""

from __future__ import annotations

import pytest
import torch
from tiny_vlm import HOSTS, VIDEO_TOKEN, save_tiny_vlm, tiny_video, video_inputs

from vtc.compressors import Compressor, create_compressor
from vtc.compressors.ops import topk_in_order
from vtc.compressors.random_drop import random_scores
from vtc.integrations import compress_video_llm
from vtc.integrations.tokens import expand_video_runs, nearest_source

pytest.importorskip("transformers")
FRAMES = 4  # Qwen: 2 temporal patches of 2 frames
QUERIES = ["find the person", "the person open a door"]  # different lengths: the batch is left-padded


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    return {host: save_tiny_vlm(root / host, host) for host in HOSTS}


def load(folder):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


def frames_and_grid(host: str) -> tuple[int, tuple[int, int] | None]:
    """What the placeholder count reads: frames (LLaVA) or temporal patches on the merged 4 x 4 grid (Qwen)."""
    return (FRAMES, None) if host == "llava_onevision" else (FRAMES // 2, (4, 4))


def batch(tokenizer, host: str, count: int) -> dict:
    return video_inputs(tokenizer, host, [tiny_video(FRAMES, 0), tiny_video(FRAMES, 1)], QUERIES, [count, count])


def language_model_inputs(model, inputs: dict, **generate) -> list[dict]:
    """The keyword arguments of each call of the language model (inputs_embeds, position_ids) during `model(**inputs)`,
    or during `generate` when options are given."""
    calls = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append({k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}),
        with_kwargs=True,
    )
    with torch.no_grad():
        model.generate(**inputs, **generate) if generate else model(**inputs)
    hook.remove()
    return calls


@pytest.mark.parametrize("host", HOSTS)
def test_none_compressor_leaves_the_logits_exactly_as_they_were(folders, host):
    reference, tokenizer = load(folders[host])
    model, _ = load(folders[host])
    compression = compress_video_llm(model, "none")
    inputs = batch(tokenizer, host, compression.placeholder_count(*frames_and_grid(host)))
    with torch.no_grad():
        expected, got = reference(**inputs).logits, model(**inputs).logits
    assert torch.equal(got, expected)


CLIP_LEVEL = [("random", {"keep_tokens": 5}), ("tome", {"num_tokens": 6})]
PER_FRAME = [("tome", {"num_tokens": 3, "scope": "frame"}), ("avgpool2d", {"pool": 2})]  # Qwen3-VL's kind
CASES = [(host, *case) for host in HOSTS for case in (PER_FRAME if host == "qwen3_vl" else CLIP_LEVEL + PER_FRAME)]


@pytest.mark.parametrize("host, name, config", CASES)
def test_the_llm_receives_exactly_the_compressed_tokens(folders, host, name, config):
    model, tokenizer = load(folders[host])
    compression = compress_video_llm(model, name, **config)
    frames, grid = frames_and_grid(host)
    expected = compression.placeholder_count(frames, grid) - int(host == "llava_onevision")
    outputs = []
    compression.compressor.register_forward_hook(lambda module, args, out: outputs.append(out.tokens[0]))
    inputs = batch(tokenizer, host, compression.placeholder_count(frames, grid))
    embeds = language_model_inputs(model, inputs)[0]["inputs_embeds"]
    video = inputs["input_ids"] == tokenizer.convert_tokens_to_ids(VIDEO_TOKEN[host])
    newline = int(host == "llava_onevision")
    assert video.sum(dim=1).tolist() == [expected + newline] * 2
    for row, tokens in enumerate(outputs):
        assert tokens.shape[0] == expected
        assert torch.equal(embeds[row][video[row]][:expected], tokens)


def test_qwen_kept_tokens_keep_their_uncompressed_positions(folders):
    reference, tokenizer = load(folders["qwen2_5_vl"])
    model, _ = load(folders["qwen2_5_vl"])
    compress_video_llm(model, "random", keep_tokens=7, seed=3)
    full = batch(tokenizer, "qwen2_5_vl", 32)
    compressed = batch(tokenizer, "qwen2_5_vl", 7)
    full_positions = language_model_inputs(reference, full)[0]["position_ids"]  # [4, B, S]: text, then t, h, w
    positions = language_model_inputs(model, compressed)[0]["position_ids"]
    kept = topk_in_order(random_scores(1, 32, 3, torch.device("cpu")), 7)[0][0]  # what `random` keeps
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    for row in range(2):
        full_video = (full["input_ids"][row] == video_id).nonzero()[:, 0]
        video = (compressed["input_ids"][row] == video_id).nonzero()[:, 0]
        assert torch.equal(positions[1:, row, video], full_positions[1:, row, full_video[kept]])
        before, after = video[0], full_video[-1] - video[-1]  # text keeps its ids on both sides of the video
        assert torch.equal(positions[1:, row, :before], full_positions[1:, row, :before])
        assert torch.equal(positions[1:, row, video[-1] + 1 :], full_positions[1:, row, video[-1] + 1 + after :])


@pytest.mark.parametrize("host", HOSTS)
def test_generate_agrees_with_and_without_the_kv_cache(folders, host):
    model, tokenizer = load(folders[host])
    compression = compress_video_llm(model, "tome", num_tokens=3, scope="frame")
    inputs = batch(tokenizer, host, compression.placeholder_count(*frames_and_grid(host)))
    options = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        cached = model.generate(**inputs, **options)
        uncached = model.generate(**inputs, **options, use_cache=False)
        first = model(**inputs).logits[:, -1].argmax(dim=-1)
    length = inputs["input_ids"].shape[1]
    assert cached.shape == (2, length + 6)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, length], first)


@pytest.mark.parametrize("host", ["qwen2_5_vl", "qwen3_vl"])
def test_qwen_tokens_that_survive_merging_keep_their_positions(folders, host):
    reference, tokenizer = load(folders[host])
    model, _ = load(folders[host])
    compress_video_llm(model, "tome", num_tokens=12, scope="frame")
    full, compressed = batch(tokenizer, host, 32), batch(tokenizer, host, 24)
    full_positions = language_model_inputs(reference, full)[0]["position_ids"]
    positions = language_model_inputs(model, compressed)[0]["position_ids"]
    with torch.no_grad():
        grid = full["video_grid_thw"]
        uncompressed = reference.model.get_video_features(full["pixel_values_videos"], grid).pooler_output
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    survivors = 0
    for row in range(2):
        tokens = compressed_video_tokens(model, compressed, row)
        full_video = (full["input_ids"][row] == video_id).nonzero()[:, 0]
        video = (compressed["input_ids"][row] == video_id).nonzero()[:, 0]
        for slot, token in enumerate(tokens):
            same = (uncompressed[row] == token).all(dim=1).nonzero()[:, 0]
            if len(same) == 1:  # a survivor: a copy of one uncompressed token
                survivors += 1
                assert torch.equal(positions[1:, row, video[slot]], full_positions[1:, row, full_video[same[0]]])
    assert survivors >= 2 * 2 * 8  # 4 of each temporal patch's 16 tokens merge into at most 4 others: 8 survive


def compressed_video_tokens(model, inputs: dict, row: int) -> torch.Tensor:
    """The compressed tokens of video `row`, as the model's patched `get_video_features` makes them."""
    with torch.no_grad():
        features = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    return features.pooler_output[row]


def test_grid_reading_compressors_get_the_hosts_grid(folders):
    model, tokenizer = load(folders["qwen2_5_vl"])
    compression = compress_video_llm(model, "avgpool2d", pool=2)
    assert compression.placeholder_count(2, (4, 4)) == 2 * 4  # a 4 x 4 grid pooled 2 x 2
    seen = []
    compression.compressor.register_forward_pre_hook(lambda module, args: seen.append(module.grid))
    language_model_inputs(model, batch(tokenizer, "qwen2_5_vl", 8))
    assert seen == [(4, 4), (4, 4)] and compression.compressor.grid is None


def test_llava_without_its_own_pooling_compresses_the_full_patch_grid(folders):
    model, tokenizer = load(folders["llava_onevision"])
    compression = compress_video_llm(model, "none", pooling=False)
    shapes = []
    compression.compressor.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    count = compression.placeholder_count(FRAMES)
    embeds = language_model_inputs(model, batch(tokenizer, "llava_onevision", count))[0]["inputs_embeds"]
    assert count == FRAMES * 16 + 1 and shapes[0][:3] == (1, FRAMES, 16) and embeds.shape[0] == 2


@pytest.mark.parametrize("host", HOSTS)
def test_a_saved_compressor_loads_into_a_fresh_model_with_the_same_logits(folders, host, tmp_path):
    torch.manual_seed(0)
    trained = create_compressor("tokenlearner", dim=32, num_tokens=3, bottleneck=8)
    model, tokenizer = load(folders[host])
    compression = compress_video_llm(model, trained)
    inputs = batch(tokenizer, host, compression.placeholder_count(*frames_and_grid(host)))
    trained.save_pretrained(tmp_path / "compressor")
    fresh, _ = load(folders[host])
    compress_video_llm(fresh, Compressor.from_pretrained(tmp_path / "compressor"))
    with torch.no_grad():
        assert torch.equal(fresh(**inputs).logits, model(**inputs).logits)


def test_wrong_models_widths_and_counts_are_refused(folders):
    model, tokenizer = load(folders["qwen2_5_vl"])
    with pytest.raises(TypeError, match="LlavaOnevisionForConditionalGeneration"):
        compress_video_llm(torch.nn.Linear(2, 2), "none")
    with pytest.raises(ValueError, match="dim=8"):
        compress_video_llm(model, create_compressor("none", dim=8))
    with pytest.raises(ValueError, match="pooling=False"):
        compress_video_llm(model, "none", pooling=False)
    compress_video_llm(model, "random", keep_tokens=5)
    with pytest.raises(ValueError, match="already runs a compressor"):
        compress_video_llm(model, "none")
    with pytest.raises(ValueError, match="tokens: 64, features: 10"), torch.no_grad():
        model(**batch(tokenizer, "qwen2_5_vl", 32))


def test_qwen3_refuses_a_compressor_whose_count_changes_from_frame_to_frame(folders):
    model, tokenizer = load(folders["qwen3_vl"])
    compress_video_llm(model, "random", keep_tokens=5)
    with pytest.raises(ValueError, match="same number of tokens in every frame"), torch.no_grad():
        model(**batch(tokenizer, "qwen3_vl", 32))


def test_nearest_source_finds_kept_tokens_and_stays_in_their_frame():
    video = torch.randn(3, 4, 8)
    compressed = create_compressor("random", dim=8, keep_tokens=5)(video[None])
    kept = topk_in_order(random_scores(1, 12, 0, torch.device("cpu")), 5)[0][0]
    assert torch.equal(nearest_source(video, compressed), kept)
    pooled = create_compressor("frame-mean", dim=8)(video[None])
    assert (nearest_source(video, pooled) // 4).tolist() == [0, 1, 2]


def test_expand_video_runs_puts_each_token_at_its_source_column():
    types = torch.tensor([[0, 0, 2, 2, 0], [0, 2, 2, 0, 0]])
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    columns, expanded, expanded_mask = expand_video_runs(types, mask, [4, 4], [torch.tensor([1, 3])] * 2)
    assert columns.tolist() == [[0, 1, 3, 5, 6], [0, 2, 4, 5, 6]]
    assert expanded.tolist() == [[0, 0, 2, 2, 2, 2, 0], [0, 2, 2, 2, 2, 0, 0]]
    assert expanded_mask.tolist() == [[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]


@pytest.mark.parametrize("host", ["llava_onevision", "qwen2_5_vl"])
def test_the_processor_writes_the_compressed_placeholder_count(folders, host):
    pytest.importorskip("torchvision", reason="transformers' video processors need torchvision")
    import transformers

    model, tokenizer = load(folders[host])
    if host == "llava_onevision":
        processor = transformers.LlavaOnevisionProcessor(
            image_processor=transformers.LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}),
            tokenizer=tokenizer,
            video_processor=transformers.LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
            num_image_tokens=16,
        )
        text = "user: <video>find the person"
    else:
        pixels = {"size": {"shortest_edge": 32 * 32, "longest_edge": 32 * 32}, "patch_size": 4, "merge_size": 2}
        processor = transformers.Qwen2_5_VLProcessor(
            image_processor=transformers.Qwen2VLImageProcessor(**pixels),
            tokenizer=tokenizer,
            video_processor=transformers.Qwen2VLVideoProcessor(**pixels, temporal_patch_size=2),
        )
        text = "user: <|vision_start|><|video_pad|><|vision_end|>find the person"
    compression = compress_video_llm(model, "random", processor=processor, keep_tokens=5)
    inputs = processor(text=[text], videos=[tiny_video(FRAMES)], return_tensors="pt")
    placeholders = int((inputs["input_ids"] == tokenizer.convert_tokens_to_ids(VIDEO_TOKEN[host])).sum())
    assert placeholders == compression.placeholder_count(*frames_and_grid(host))
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[1] == inputs["input_ids"].shape[1] + 2


@pytest.mark.parametrize("host", HOSTS)
def test_one_training_step_moves_the_compressor_and_the_lora_weights(folders, host):
    peft = pytest.importorskip("peft")
    model, tokenizer = load(folders[host])
    torch.manual_seed(0)
    compression = compress_video_llm(model, "tokenlearner", num_tokens=2, bottleneck=8)
    lora = peft.LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)")
    model = peft.get_peft_model(model, lora)
    compression.compressor.requires_grad_(True)
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    before = {name: p.detach().clone() for name, p in trained.items()}
    inputs = batch(tokenizer, host, compression.placeholder_count(*frames_and_grid(host)))
    model.train()
    loss = model(**inputs, labels=inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)).loss
    loss.backward()
    torch.optim.SGD(trained.values(), lr=0.1).step()
    moved = {name for name, p in trained.items() if not torch.equal(p, before[name])}
    assert torch.isfinite(loss)
    assert any("lora_" in name for name in moved)
    assert any("video_token_compression.compressor" in name for name in moved)
