"""In-ViT baselines (STAC's protocol): ToMe and a TokenLearner inside the vision tower, counted per layer."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from tiny_hf import save_blip2, save_vision

import vtc
from vtc.encoders import build_encoder
from vtc.encoders.patch.tokenlearner import encoder_layers, learners, tokens_per_layer
from vtc.lmm.persistence import load_encoder_weights
from vtc.train.checkpoint import load_model

PATCHES = 16  # tiny towers: 32 x 32 frames, 8 x 8 patches, 2 layers, width 32, with a class token but SigLIP


def frames(count: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (count, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("in_vit")
    return {
        "clip": save_vision(root / "clip", "clip"),
        "siglip": save_vision(root / "siglip", "siglip"),
        "blip2": save_blip2(root / "blip2", "t5"),
    }


def layer_widths(encoder, tower) -> list[int]:
    """Tokens per frame (class token included) each layer of `tower` hands on while `encoder` encodes frames."""
    widths: list[int] = []
    handles = [
        layer.register_forward_hook(lambda module, args, output: widths.append(output.shape[1]))
        for layer in encoder_layers(tower)
    ]
    encoder.encode(frames())
    for handle in handles:
        handle.remove()
    return widths


def test_tokens_per_layer_hand_computed():
    assert tokens_per_layer(16, 2) == [16, 16, 16]
    assert tokens_per_layer(16, 3, tome_r=3) == [16, 13, 10, 7]
    assert tokens_per_layer(5, 3, tome_r=4) == [5, 3, 2, 1]  # each merge capped at half
    assert tokens_per_layer(16, 3, tokenlearner={"layer": 2, "num_tokens": 4}) == [16, 16, 4, 4]


@pytest.mark.parametrize("kind", ["clip", "siglip", "blip2"])
@pytest.mark.parametrize("reduction", [{"tome_r": 3}, {"tokenlearner": {"layer": 1, "num_tokens": 3}}])
def test_every_layer_gives_the_counted_tokens_and_tokens_per_frame_reports_the_last(folders, kind, reduction):
    options = {"output": "patches"} if kind == "blip2" else {}
    encoder = build_encoder({"type": kind, "path": str(folders[kind]), **options, **reduction})
    tower = encoder.vision_model if kind == "blip2" else encoder.model
    class_token = int(kind != "siglip")
    counts = tokens_per_layer(PATCHES, 2, reduction.get("tome_r", 0), reduction.get("tokenlearner"))
    assert counts[1:] == ([13, 10] if "tome_r" in reduction else [3, 3])
    assert layer_widths(encoder, tower) == [count + class_token for count in counts[1:]]
    assert encoder.tokens_per_frame == counts[-1]
    assert encoder.encode(frames()).shape == (2, counts[-1], 32)


def test_clip_feature_layer_before_the_tokenlearner_keeps_every_patch(folders):
    early = build_encoder(
        {"type": "clip", "path": str(folders["clip"]), "feature_layer": 1, "tokenlearner": {"layer": 2}}
    )
    assert early.tokens_per_frame == PATCHES and early.encode(frames()).shape == (2, PATCHES, 32)


@pytest.mark.parametrize(
    ("reduction", "width"), [({"tome_r": 3}, 1 + 10), ({"tokenlearner": {"num_tokens": 3, "layer": 2}}, 1 + 3)]
)
def test_the_qformer_cross_attends_to_the_reduced_patches(folders, reduction, width):
    encoder = build_encoder({"type": "blip2", "path": str(folders["blip2"]), **reduction})
    seen = []
    encoder.qformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].shape), with_kwargs=True
    )
    assert encoder.encode(frames()).shape == (2, 8, 32)  # the Q-Former's 8 queries per frame, unchanged
    assert seen == [torch.Size([2, width, 32])]


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_only_the_tokenlearner_trains_and_gradients_reach_it(folders, version):
    encoder = build_encoder(
        {"type": "siglip", "path": str(folders["siglip"]), "tokenlearner": {"layer": 1, "version": version}}
    )
    assert encoder.supports_training and not any(p.requires_grad for p in encoder.parameters())
    encoder.requires_grad_(True)
    (learner,) = learners(encoder)
    trainable = {id(p) for p in encoder.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in learner.parameters()}
    encoder.encode(frames()).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
    assert all(p.grad is None for p in encoder.parameters() if id(p) not in trainable)


def test_the_model_trains_the_in_vit_tokenlearner_with_its_loss(tmp_path):
    folder = save_blip2(tmp_path / "blip2", "t5")
    config = {
        "encoder": {"type": "blip2", "tokenlearner": {"layer": 1, "num_tokens": 4}},
        "encoder_trainable": True,
        "llm": {"path": str(folder), "mode": "frozen"},
        "num_frames": 2,
    }
    torch.manual_seed(0)
    model = vtc.build_model(config)
    (learner,) = learners(model.encoder)
    encoder_trainable = [p for p in model.encoder.parameters() if p.requires_grad]
    assert {id(p) for p in encoder_trainable} == {id(p) for p in learner.parameters()}
    batch = {"frames": [frames(2)], "timestamps": [[0.5, 1.5]], "query": ["the person opens a door"]}
    model.train()
    model({**batch, "window": [(0.0, 1.0)]}).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
    assert all(p.grad is None for p in model.encoder.vision_model.embeddings.parameters())
    model.save_pretrained(tmp_path / "checkpoint")  # the learner's weights only, not the pretrained tower's
    saved = load_file(str(tmp_path / "checkpoint" / "encoder.safetensors"))
    assert set(saved) == {name for name, p in model.encoder.named_parameters() if p.requires_grad}
    assert sum(t.numel() for t in saved.values()) == sum(p.numel() for p in learner.parameters())
    loaded = load_model(tmp_path / "checkpoint")
    torch.testing.assert_close(loaded.encoder.state_dict(), model.encoder.state_dict())
    with pytest.raises(ValueError, match="encoder weights do not match the encoder: missing"):
        load_encoder_weights(loaded.encoder, {})


def test_bad_in_vit_options_raise(folders):
    path = str(folders["clip"])
    with pytest.raises(ValueError, match=r"tokenlearner\.layer must be in 1\.\.2"):
        build_encoder({"type": "clip", "path": path, "tokenlearner": {"layer": 3}})
    with pytest.raises(ValueError, match="unknown tokenlearner keys"):
        build_encoder({"type": "clip", "path": path, "tokenlearner": {"tokens": 4}})
    with pytest.raises(ValueError, match=r"tokenlearner\.num_tokens"):
        build_encoder({"type": "clip", "path": path, "tokenlearner": {"num_tokens": 0}})
    with pytest.raises(ValueError, match=r"tokenlearner\.num_tokens must be <= 16"):
        build_encoder({"type": "clip", "path": path, "tokenlearner": {"layer": 1, "num_tokens": 17}})
    with pytest.raises(ValueError, match="tokenlearner needs tome_r=0"):
        build_encoder({"type": "clip", "path": path, "tome_r": 2, "tokenlearner": {"layer": 1}})
    with pytest.raises(ValueError, match="tokenlearner must be a mapping"):
        build_encoder({"type": "clip", "path": path, "tokenlearner": 8})
