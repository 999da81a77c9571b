"""VisionZip inside the model: the encoders' attention (CLIP, SigLIP, BLIP-2 patches), its way through `VideoLMM`,
the training batches and the feature cache, and the errors where no attention exists."""

from __future__ import annotations

import pytest
import torch
from test_feature_cache import write_video
from tiny_hf import save_blip2, save_causal_lm, save_vision

import vtc
from vtc.data.batch import collate
from vtc.encoders import build_encoder
from vtc.encoders.cache import FeatureCache, extract_features
from vtc.train.data import EncodedSamples
from vtc.video import load_video

QUERIES = ["the person opens a door", "the person sits down"]
WINDOWS = [(1.5, 4.0), (0.0, 2.5)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
        "clip": save_vision(root / "clip", "clip"),
        "siglip": save_vision(root / "siglip", "siglip"),
        "t5": save_causal_lm(root / "t5", "t5"),
    }


def random_frames(count: int, seed: int = 0) -> torch.Tensor:
    """`[count, 32, 32, 3]` uint8 frames: the towers' input size, so preprocessing only normalises."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 32, 32, 3), dtype=torch.uint8, generator=generator)


def attention_by_hand(model: torch.nn.Module, frames: torch.Tensor, layer: int, class_token: bool) -> torch.Tensor:
    """`[T, N]` from the tower's weights: `softmax(q k^T / sqrt(d))` of transformer layer `layer` (0-based) on that
    layer's input, the [CLS] row without its own column (`class_token`) or the mean over queries, mean over heads."""
    pixels = (frames.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states[layer]
        block = model.encoder.layers[layer]
        normed = block.layer_norm1(hidden)
        heads = block.self_attn.num_heads
        query, key = (
            projection(normed).unflatten(-1, (heads, -1)).transpose(1, 2)
            for projection in (block.self_attn.q_proj, block.self_attn.k_proj)
        )
        weights = torch.softmax(query @ key.transpose(-1, -2) / query.shape[-1] ** 0.5, dim=-1)
    return weights[:, :, 0, 1:].mean(dim=1) if class_token else weights.mean(dim=(1, 2))


@pytest.mark.parametrize(("kind", "feature_layer", "layer"), [("clip", -1, 1), ("clip", 1, 0), ("siglip", None, 1)])
def test_encoder_attention_is_the_eager_towers_attention_computed_by_hand(folders, kind, feature_layer, layer):
    from transformers import CLIPVisionModel, SiglipVisionModel

    config = {"type": kind, "path": str(folders[kind]), "chunk_size": 2}  # 5 frames: chunks of 2, 2 and 1 joined
    config.update({} if feature_layer is None else {"feature_layer": feature_layer})
    encoder = build_encoder({**config, "attention": True})
    frames = random_frames(5)
    tokens, attention = encoder.encode_with_attention(frames)
    assert encoder.provides_attention and attention.shape == (5, 16) and attention.dtype == torch.float32
    assert torch.isfinite(attention).all() and (attention >= 0).all()
    tower = (CLIPVisionModel if kind == "clip" else SiglipVisionModel).from_pretrained(folders[kind]).eval()
    expected = attention_by_hand(tower, frames, layer, class_token=kind == "clip")
    torch.testing.assert_close(attention, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(tokens, encoder.encode(frames))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_default_encoders_are_unchanged(folders, kind):
    frames = random_frames(3)
    plain = build_encoder({"type": kind, "path": str(folders[kind])})
    attending = build_encoder({"type": kind, "path": str(folders[kind]), "attention": True})
    assert not plain.provides_attention and plain.model.config._attn_implementation != "eager"
    torch.testing.assert_close(plain.encode(frames), attending.encode(frames), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="built without attention"):
        plain.encode_with_attention(frames)


def test_blip2_patch_attention_and_refusals(folders, tmp_path):
    from transformers import Blip2ForConditionalGeneration

    path = save_blip2(tmp_path / "blip2", "t5")
    encoder = build_encoder({"type": "blip2", "path": str(path), "output": "patches", "attention": True})
    frames = random_frames(2)
    tokens, attention = encoder.encode_with_attention(frames)
    tower = Blip2ForConditionalGeneration.from_pretrained(path, attn_implementation="eager").vision_model.eval()
    pixels = (frames.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        last = tower(pixel_values=pixels, output_attentions=True).attentions[-1]
    assert tokens.shape == (2, 16, 32)
    torch.testing.assert_close(attention, last[:, :, 0, 1:].mean(dim=1))
    with pytest.raises(ValueError, match="output='patches'"):
        build_encoder({"type": "blip2", "path": str(path), "attention": True})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tome_r": 2}, "tome_r"),
        ({"feature_layer": 0}, "feature_layer=0"),
        ({"attention": "yes"}, "true or false"),
    ],
)
def test_bad_attention_options(folders, changes, message):
    with pytest.raises(ValueError, match=message):
        build_encoder({"type": "clip", "path": str(folders["clip"]), "attention": True, **changes})


def lmm_config(folders, encoder: dict | None = None, **changes) -> dict:
    """A CLIP + tiny T5 model with VisionZip (contextual tokens off: every kept token is a dominant one)."""
    encoder = {"type": "clip", "path": str(folders["clip"]), "attention": True} if encoder is None else encoder
    compressor = {"name": "visionzip", "keep_tokens": 6, "contextual_ratio": 0.0}
    config = {"encoder": encoder, "llm": {"path": str(folders["t5"]), "mode": "lora"}, "compressor": compressor}
    return {**config, "num_frames": 3, "max_new_tokens": 4, **changes}


def frames_batch() -> dict:
    """Two videos of 3 and 2 frames (a padded batch)."""
    frames = [random_frames(3, seed=1), random_frames(2, seed=2)]
    timestamps = [torch.arange(len(video), dtype=torch.float32) for video in frames]
    return {"frames": frames, "timestamps": timestamps, "query": QUERIES, "window": WINDOWS}


def test_visionzip_in_a_video_lmm_keeps_the_most_attended_tokens(folders):
    torch.manual_seed(0)
    model = vtc.build_model(lmm_config(folders))
    batch = frames_batch()
    loss = model(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    with torch.no_grad():
        compressed = model.visual_tokens(batch)
    for index, frames in enumerate(batch["frames"]):
        tokens, attention = model.encoder.encode_with_attention(frames)
        share = 6 // len(frames)  # 2 tokens from each of 3 frames, 3 from each of 2
        top = attention.topk(share, dim=1).indices.sort(dim=1).values  # raster order within a frame
        expected = tokens.gather(1, top[..., None].expand(-1, -1, tokens.shape[-1])).flatten(0, 1)
        torch.testing.assert_close(compressed.tokens[index][compressed.mask[index]], expected)
        assert compressed.aux["dominant"][index][compressed.mask[index]].all()


def test_visionzip_without_encoder_attention_raises_a_clear_error(folders):
    plain = {"type": "clip", "path": str(folders["clip"])}
    with pytest.raises(ValueError, match="built without attention: set attention: true"):
        vtc.build_model(lmm_config(folders, plain))(frames_batch())
    tiny = {"type": "tiny", "image_size": 16, "patch_size": 8, "dim": 16, "depth": 1, "heads": 2}
    with pytest.raises(ValueError, match="TinyVisionEncoder encoder gives no attention"):
        vtc.build_model(lmm_config(folders, tiny))(frames_batch())
    cached = {"features": torch.randn(2, 3, 16, 32), "timestamps": torch.arange(3.0).expand(2, 3), "query": QUERIES}
    model = vtc.build_model(lmm_config(folders))
    with pytest.raises(ValueError, match=r"batch\['attention'\] \[B, T, N\] beside cached features"):
        model.visual_tokens(cached)
    qformer = lmm_config(folders, qformer={"num_queries": 4, "hidden": 32, "depth": 1})
    with pytest.raises(ValueError, match="visionzip needs encoder attention, which qformer queries lack"):
        vtc.build_model(qformer).visual_tokens(frames_batch())


def test_feature_cache_and_encoded_samples_keep_the_attention(folders, tmp_path):
    videos = {
        f"v{index}": write_video(tmp_path / f"v{index}.mp4", seed=index, num_frames=2 + 2 * index) for index in (0, 1)
    }
    model = vtc.build_model(lmm_config(folders))
    extract_features(videos, model.encoder, tmp_path / "cache", {"fps": 10.0}, rank=0, world_size=1)
    cache = FeatureCache(tmp_path / "cache")
    assert cache.settings["attention"] is True
    clips = [load_video(videos[video_id], fps=10.0) for video_id in ("v0", "v1")]
    samples = []
    for video_id, clip in zip(("v0", "v1"), clips, strict=True):
        sample = cache.load(video_id)
        tokens, attention = model.encoder.encode_with_attention(clip.frames)
        torch.testing.assert_close(sample["attention"], attention)
        torch.testing.assert_close(sample["features"], tokens)
        samples.append({**sample, "query": QUERIES[0], "window": WINDOWS[0], "qid": video_id})
    batch = collate(samples)
    assert batch["attention"].shape == (2, 4, 16) and (batch["attention"][0, 2:] == 0).all()  # v0: 2 frames of 4
    frames = {"frames": [clip.frames for clip in clips], "timestamps": [clip.timestamps for clip in clips]}
    with torch.no_grad():
        from_cache, from_frames = model.visual_tokens(batch), model.visual_tokens(frames)
    torch.testing.assert_close(from_cache.tokens, from_frames.tokens)
    assert model.predict(cache.load("v1"), QUERIES[1])["text"] is not None

    plain = build_encoder({"type": "clip", "path": str(folders["clip"])})
    extract_features(videos, plain, tmp_path / "plain", {"fps": 10.0}, rank=0, world_size=1)
    assert "attention" not in FeatureCache(tmp_path / "plain").load("v0")

    encoded = EncodedSamples([{"frames": clip.frames, "qid": "x"} for clip in clips], model.encoder)
    torch.testing.assert_close(encoded[1]["attention"], model.encoder.encode_with_attention(clips[1].frames)[1])
    assert "attention" not in EncodedSamples([{"frames": clips[0].frames}], plain)[0]
