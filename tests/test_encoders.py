"""Vision encoders: tiny random BLIP-2 / CLIP / SigLIP saved to a folder and loaded back by path."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_hf import save_blip2, save_vision

from vtc.encoders import TinyVisionEncoder, build_encoder
from vtc.encoders.hf import ImageSettings, preprocess_frames, read_image_settings


def random_frames(count: int = 5, height: int = 40, width: int = 48) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


@pytest.fixture(scope="module")
def blip2_t5(tmp_path_factory):
    return save_blip2(tmp_path_factory.mktemp("blip2"), "t5")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_clip_siglip_patch_tokens_without_class_token(tmp_path, kind):
    encoder = build_encoder({"type": kind, "path": str(save_vision(tmp_path, kind)), "chunk_size": 2})
    tokens = encoder.encode(random_frames())
    assert tokens.shape == (5, 16, 32)
    assert (encoder.tokens_per_frame, encoder.output_dim) == (16, 32)
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    assert not encoder.train().training


def test_clip_drops_class_token_and_matches_transformers(tmp_path):
    from transformers import CLIPVisionModel

    path = save_vision(tmp_path, "clip")
    encoder = build_encoder({"type": "clip", "path": str(path)})
    frames = random_frames(2, 32, 32)
    pixels = (frames.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    expected = CLIPVisionModel.from_pretrained(path).eval()(pixel_values=pixels).last_hidden_state[:, 1:]
    torch.testing.assert_close(encoder.encode(frames), expected, rtol=1e-4, atol=1e-5)


def test_chunking_does_not_change_the_output(tmp_path):
    path = str(save_vision(tmp_path, "siglip"))
    frames = random_frames(7)
    whole = build_encoder({"type": "siglip", "path": path, "chunk_size": 7}).encode(frames)
    chunked = build_encoder({"type": "siglip", "path": path, "chunk_size": 3}).encode(frames)
    torch.testing.assert_close(whole, chunked, rtol=1e-4, atol=1e-5)


def test_blip2_qformer_tokens_match_transformers(blip2_t5):
    from transformers import Blip2ForConditionalGeneration

    encoder = build_encoder({"type": "blip2", "path": str(blip2_t5), "chunk_size": 2})
    frames = random_frames(3, 32, 32)
    tokens = encoder.encode(frames)
    assert tokens.shape == (3, 8, 32)
    model = Blip2ForConditionalGeneration.from_pretrained(blip2_t5).eval()
    pixels = (frames.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    expected = model.get_image_features(pixel_values=pixels).qformer_outputs.last_hidden_state
    torch.testing.assert_close(tokens, expected, rtol=1e-4, atol=1e-5)


def test_blip2_patch_tokens(blip2_t5):
    encoder = build_encoder({"type": "blip2", "path": str(blip2_t5), "output": "patches"})
    assert encoder.encode(random_frames(2)).shape == (2, 16, 32)
    assert not hasattr(encoder, "language_model")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_tome_r_in_the_encoder_config_merges_inside_the_tower(tmp_path, kind):
    path = str(save_vision(tmp_path, kind))
    encoder = build_encoder({"type": kind, "path": path, "tome_r": 3})
    assert all(hasattr(layer, "_tome_state") for layer in encoder.model.encoder.layers)
    assert encoder.tokens_per_frame == 16 - 2 * 3  # two layers, three tokens merged in each
    assert encoder.encode(random_frames(2)).shape == (2, 10, 32)
    assert build_encoder({"type": kind, "path": path}).encode(random_frames(2)).shape == (2, 16, 32)


def test_tome_r_with_an_earlier_clip_feature_layer(tmp_path):
    encoder = build_encoder(
        {"type": "clip", "path": str(save_vision(tmp_path, "clip")), "feature_layer": -2, "tome_r": 3}
    )
    assert encoder.tokens_per_frame == 13 and encoder.encode(random_frames(2)).shape == (2, 13, 32)


def test_tome_r_reaches_the_blip2_tower(blip2_t5):
    patches = build_encoder({"type": "blip2", "path": str(blip2_t5), "output": "patches", "tome_r": 2})
    assert patches.tokens_per_frame == 12 and patches.encode(random_frames(2)).shape == (2, 12, 32)
    qformer = build_encoder({"type": "blip2", "path": str(blip2_t5), "tome_r": 2})
    assert all(hasattr(layer, "_tome_state") for layer in qformer.vision_model.encoder.layers)
    assert qformer.encode(random_frames(2)).shape == (2, 8, 32)
    with pytest.raises(ValueError, match="tome_r"):
        build_encoder({"type": "blip2", "path": str(blip2_t5), "tome_r": -1})


def test_image_settings_from_folder_and_fallback(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "do_center_crop": True,
                "crop_size": {"height": 24, "width": 24},
                "size": {"shortest_edge": 30},
                "image_mean": [0.1, 0.2, 0.3],
                "image_std": [0.4, 0.5, 0.6],
            }
        )
    )
    settings = read_image_settings(tmp_path, 224, (0.5,) * 3, (0.5,) * 3)
    assert settings.size == (24, 24) and settings.mean == (0.1, 0.2, 0.3) and settings.std == (0.4, 0.5, 0.6)
    assert settings.center_crop
    fallback = read_image_settings(tmp_path / "missing", 64, (0.5,) * 3, (0.25,) * 3)
    assert fallback.size == (64, 64) and fallback.std == (0.25,) * 3


def test_center_crop_keeps_the_aspect_ratio():
    settings = ImageSettings(size=(8, 8), mean=(0.0,) * 3, std=(1.0,) * 3, rescale_factor=1.0, center_crop=True)
    frames = torch.zeros(1, 16, 32, 3, dtype=torch.uint8)
    frames[:, :, 2:30] = 200  # only the middle half of a 2:1 frame survives a square centre crop
    pixels = preprocess_frames(frames, settings)
    assert pixels.shape == (1, 3, 8, 8)
    torch.testing.assert_close(pixels, torch.full_like(pixels, 200.0), rtol=0, atol=0.5)


def test_preprocess_resizes_and_normalises():
    settings = ImageSettings(size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)
    white = torch.full((2, 40, 30, 3), 255, dtype=torch.uint8)
    pixels = preprocess_frames(white, settings)
    assert pixels.shape == (2, 3, 16, 16)
    torch.testing.assert_close(pixels, torch.ones_like(pixels))


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.zeros(2, 32, 32, dtype=torch.uint8), r"\[T, H, W, 3\]"),
        (torch.zeros(0, 32, 32, 3, dtype=torch.uint8), "non-empty"),
        (torch.zeros(2, 32, 32, 3), "uint8"),
    ],
)
def test_bad_frames_raise_value_error(frames, message):
    with pytest.raises(ValueError, match=message):
        TinyVisionEncoder().encode(frames)


def test_tiny_encoder_is_trainable():
    encoder = build_encoder({"type": "tiny", "image_size": 32, "patch_size": 8, "dim": 16})
    tokens = encoder.encode(random_frames(3))
    assert tokens.shape == (3, 16, 16)
    tokens.pow(2).mean().backward()
    assert encoder.patch_embed.weight.grad is not None and encoder.patch_embed.weight.grad.abs().sum() > 0


def test_unknown_encoder_type():
    with pytest.raises(ValueError, match="encoder type"):
        build_encoder({"type": "resnet"})


def test_4bit_needs_bitsandbytes(tmp_path):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="bitsandbytes"):
            build_encoder({"type": "clip", "path": str(tmp_path), "load_in_4bit": True})
    else:
        pytest.skip("bitsandbytes is installed; 4-bit loading is exercised in tests/test_lmm.py")
