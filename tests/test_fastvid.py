"""`fastvid`: segments split at the similarity drop, density-peak anchors, DTM merging, exact budgets, no padding."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor
from vtc.compressors.fastvid import anchor_frames, density_peak_scores, merge_into_anchors, segment_lengths

DIM, PER_FRAME = 8, 16


def two_scenes(first: int = 5, second: int = 5, noise: float = 0.02) -> torch.Tensor:
    """`[1, first + second, N, D]`: two scenes of nearly constant, mutually orthogonal tokens."""
    generator = torch.Generator().manual_seed(0)
    scene_a, scene_b = torch.zeros(DIM), torch.zeros(DIM)
    scene_a[0], scene_b[1] = 1.0, 1.0
    frames = torch.cat([scene_a.expand(first, PER_FRAME, DIM), scene_b.expand(second, PER_FRAME, DIM)])
    return (frames + noise * torch.randn(frames.shape, generator=generator)).unsqueeze(0)


def test_dyseg_splits_at_the_similarity_drop() -> None:
    features = two_scenes(4, 6)[0].mean(dim=1)
    assert segment_lengths(features, num_segments=2, threshold=-0.99) == [4, 6]  # the lowest transition
    assert segment_lengths(features, num_segments=1, threshold=0.5) == [4, 6]  # the threshold alone
    assert segment_lengths(features, num_segments=1, threshold=-0.99) == [10]
    three = segment_lengths(features, num_segments=3, threshold=-0.99)  # the drop, and the next lowest transition
    assert len(three) == 3 and sum(three) == 10 and 4 in torch.tensor(three).cumsum(0).tolist()


def test_density_peaks_are_one_per_cluster() -> None:
    generator = torch.Generator().manual_seed(1)
    cluster_a = torch.randn(6, DIM, generator=generator) * 0.01
    cluster_b = torch.randn(4, DIM, generator=generator) * 0.01 + 5.0
    scores = density_peak_scores(torch.cat([cluster_a, cluster_b]).unsqueeze(0), neighbors=3)
    peaks = scores[0].topk(2).indices.tolist()
    assert sorted(peak >= 6 for peak in peaks) == [False, True]


def test_anchor_frames_count_back_from_the_segment_end() -> None:
    assert anchor_frames(8, 10, per_frame=16, step=4) == ([3, 7], [5, 5])
    assert anchor_frames(5, 3, per_frame=16, step=4) == ([0, 4], [1, 2])  # the remainder goes to the last frame
    assert anchor_frames(5, 1, per_frame=16, step=4) == ([4], [1])
    assert anchor_frames(4, 60, per_frame=16, step=4) == ([0, 1, 2, 3], [15, 15, 15, 15])  # more anchors to fit


def test_merge_weights_anchor_and_joined_mean() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sources = torch.tensor([[1.0, 0.0], [3.0, 0.1], [0.0, 2.0]])
    merged = merge_into_anchors(anchors, sources, merge_weight=0.6)
    # anchor 0 joins 2 sources: w = max(1/3, 0.6); anchor 1 joins 1: w = max(1/2, 0.6)
    torch.testing.assert_close(merged[0], 0.6 * anchors[0] + 0.4 * torch.tensor([2.0, 0.05]))
    torch.testing.assert_close(merged[1], 0.6 * anchors[1] + 0.4 * torch.tensor([0.0, 2.0]))


def test_one_token_per_scene_anchored_at_each_segment_end() -> None:
    tokens = two_scenes(5, 5)
    out = create_compressor("fastvid", dim=DIM, keep_tokens=2, num_segments=2, threshold=-0.99)(tokens)
    assert out.frame_index[0].tolist() == [4, 9]
    assert out.tokens[0, 0].argmax() == 0 and out.tokens[0, 1].argmax() == 1  # each summarises its own scene


def test_padded_frames_are_never_segmented_nor_kept() -> None:
    tokens = two_scenes(3, 3)
    frame_mask = torch.tensor([[True, True, False, True, True, False]])
    model = create_compressor("fastvid", dim=DIM, keep_tokens=6, num_segments=2, threshold=-0.99)
    out = model(tokens, frame_mask=frame_mask)
    alone = model(tokens[:, [0, 1, 3, 4]])
    assert set(out.frame_index[0].tolist()) <= {0, 1, 3, 4}
    torch.testing.assert_close(out.tokens, alone.tokens)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        create_compressor("fastvid", dim=DIM, threshold=1.5)
    with pytest.raises(ValueError, match="merge_weight"):
        create_compressor("fastvid", dim=DIM, merge_weight=2.0)
    with pytest.raises(ValueError, match="anchor_step"):
        create_compressor("fastvid", dim=DIM, anchor_step=0)
