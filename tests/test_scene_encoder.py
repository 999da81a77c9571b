"""Scene encoder: slot read-out, temporal changes, pre-training on the renderer's labels, save/load in a VideoLMM,
and the in-memory feature cache of a frozen encoder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from tiny_hf import save_causal_lm

import vtc
from vtc.data.batch import collate
from vtc.encoders import build_encoder
from vtc.lmm.model import VideoLMM
from vtc.train.data import EncodedSamples
from vtc.world.pretrain import pretrain_scene_encoder
from vtc.world.raster import COLOURS, NUM_OBJECT_CLASSES, SHAPES, object_class_index
from vtc.world.scene_encoder import (
    AREA_SCALE,
    CHANGE_SCALE,
    SceneEncoder,
    class_attributes,
    hard_assignment,
    slot_states,
    temporal_changes,
    temporal_median,
)
from vtc.world.source import SyntheticSamples
from vtc.world.synthetic import SyntheticMoments


def test_slot_states_read_area_and_centre():
    probabilities = torch.zeros(1, 3, 5, 5)
    probabilities[0, 0] = 1.0
    probabilities[0, 0, 0:2, 3:5] = 0.0
    probabilities[0, 1, 0:2, 3:5] = 1.0  # class 1: a 2 x 2 block in the top-right corner
    states = slot_states(probabilities)[0]
    assert states[1, 0] == pytest.approx(4 / 25 * AREA_SCALE)
    assert states[1, 1] == pytest.approx(0.75) and states[1, 2] == pytest.approx(-0.75)  # x right, y up
    assert torch.equal(states[2], torch.zeros(3))  # an absent class
    assert states[0, 0] == pytest.approx(21 / 25 * AREA_SCALE)


def test_temporal_changes_are_differences_to_the_neighbours():
    states = torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1)
    changes = temporal_changes(states)[:, 0]
    assert torch.equal(changes, CHANGE_SCALE * torch.tensor([[0.0, 1.0], [1.0, 2.0], [2.0, 0.0]]))


def test_temporal_median_removes_blips_and_keeps_monotone_changes():
    ramp = torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 3.0]).view(7, 1, 1)
    assert torch.equal(temporal_median(ramp), ramp)
    blip = torch.tensor([1.0, 1.0, 1.0, 9.0, 9.0, 1.0, 1.0, 1.0]).view(8, 1, 1)
    assert torch.equal(temporal_median(blip), torch.ones(8, 1, 1))


def test_hard_assignment_gives_pixels_to_their_class_and_drops_stray_ones():
    log_probs = torch.full((1, 3, 4, 4), -5.0)
    log_probs[0, 0] = 0.0
    log_probs[0, 1, :2, :2] = 1.0  # class 1: four pixels, kept
    log_probs[0, 2, 3, 3] = 1.0  # class 2: one stray pixel, dropped
    areas = hard_assignment(log_probs, min_pixels=2).sum((-2, -1))[0]
    assert torch.allclose(areas, torch.tensor([11.0, 4.0, 0.0]), atol=1e-5)


def test_class_attributes_name_colour_and_shape():
    attributes = class_attributes()
    assert attributes.shape == (NUM_OBJECT_CLASSES, len(COLOURS) + len(SHAPES))
    assert torch.equal(attributes[0], torch.zeros(len(COLOURS) + len(SHAPES)))
    red_star = object_class_index("red", "star")
    assert attributes[red_star].nonzero().flatten().tolist() == [0, len(COLOURS) + SHAPES.index("star")]


def test_encode_shapes_and_bad_input():
    encoder = SceneEncoder(width=8)
    tokens = encoder.encode(torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8))
    assert tokens.shape == (4, encoder.tokens_per_frame, encoder.output_dim) == (4, 25, 19)
    assert torch.equal(tokens[:, :, :10], class_attributes().expand(4, -1, -1))
    with pytest.raises(ValueError):
        encoder.encode(torch.zeros(4, 32, 32, dtype=torch.uint8))


def test_pretraining_learns_the_scene_labels_and_loads_from_a_file(tmp_path):
    torch.manual_seed(0)
    moments = SyntheticMoments(num_videos=10_000, duration=4.0, fps=2.0, frame_size=32, seed=9)
    encoder = SceneEncoder(width=16)
    losses = []
    report = pretrain_scene_encoder(
        encoder, moments, steps=60, frames_per_step=16, progress=lambda s, x: losses.append(x)
    )
    assert len(losses) == 60 and sum(losses[-10:]) < 0.8 * sum(losses[:10])
    assert 0.0 <= report["object_accuracy"] <= 1.0 and report["loss"] == pytest.approx(losses[-1])
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    save_file(encoder.segmenter.state_dict(), str(tmp_path / "scene.safetensors"))
    loaded = build_encoder({"type": "scene", "width": 16, "path": str(tmp_path / "scene.safetensors")})
    frames = moments.render(0).frames
    torch.testing.assert_close(loaded.encode(torch.from_numpy(frames)), encoder.encode(torch.from_numpy(frames)))


def test_a_video_lmm_stores_its_scene_encoder_and_caches_its_features(tmp_path):
    torch.manual_seed(0)
    llm = {"path": str(save_causal_lm(tmp_path / "llama", "llama")), "mode": "full"}
    model = vtc.build_model({"encoder": {"type": "scene", "width": 8}, "llm": llm, "num_frames": 3}).eval()
    model.save_pretrained(tmp_path / "model")
    loaded = VideoLMM.from_pretrained(tmp_path / "model").eval()
    torch.testing.assert_close(loaded.encoder.state_dict(), model.encoder.state_dict())
    samples = SyntheticSamples(SyntheticMoments(num_videos=3, duration=3.0, fps=1.0, frame_size=16), 3)
    encoded = EncodedSamples(samples, model.encoder)
    from_frames, from_features = collate([samples[i] for i in range(3)]), collate([encoded[i] for i in range(3)])
    assert from_features["features"].shape == (3, 3, 25, 19) and "frames" not in from_features
    assert encoded[1] is encoded[1]  # encoded once, kept
    with torch.no_grad():
        torch.testing.assert_close(model(from_features), model(from_frames))
