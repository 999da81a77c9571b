"""`prunevid`: contiguous frame segments, static tokens merged over time, dynamic ones kept, DPC-kNN spatial merging."""

from __future__ import annotations

import pytest
import torch

from vtc import create_compressor
from vtc.compressors.prunevid import apportion, contiguous_segments, dpc_knn_centers, merge_to_centers

FRAMES, PER_FRAME, DIM = 4, 4, 16


def half_static_video() -> torch.Tensor:
    """`[1, 4, 4, 16]`: positions 0 and 1 hold the same token in every frame, positions 2 and 3 a new orthogonal one
    in each frame."""
    basis = torch.eye(DIM)
    video = torch.zeros(1, FRAMES, PER_FRAME, DIM)
    video[0, :, 0], video[0, :, 1] = basis[0], basis[1]
    for frame in range(FRAMES):
        video[0, frame, 2], video[0, frame, 3] = basis[2 + 2 * frame], basis[3 + 2 * frame]
    return video


def test_static_tokens_are_merged_over_time_and_dynamic_tokens_kept() -> None:
    video = half_static_video()
    out = create_compressor("prunevid", dim=DIM, keep_tokens=2 + 2 * FRAMES)(video)
    assert out.frame_index[0].tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert out.aux["size"][0].tolist() == [FRAMES, FRAMES, 1, 1, 1, 1, 1, 1, 1, 1]
    expected = torch.cat([video[0, 0, :2], video[0, :, 2:].reshape(2 * FRAMES, DIM)])
    torch.testing.assert_close(out.tokens[0], expected)


def test_a_slowly_drifting_position_is_static_only_above_tau() -> None:
    video = half_static_video()
    video[0, :, 2] = torch.eye(DIM)[8] + 0.3 * torch.eye(DIM)[9 : 9 + FRAMES]  # pairwise cosine 1 / 1.09 = 0.92
    merged = create_compressor("prunevid", dim=DIM, keep_tokens=3 + FRAMES, tau=0.9)(video)
    assert merged.aux["size"][0].tolist() == [FRAMES, FRAMES, FRAMES, 1, 1, 1, 1]
    kept = create_compressor("prunevid", dim=DIM, keep_tokens=2 + 2 * FRAMES, tau=0.95)(video)
    assert kept.aux["size"][0].tolist() == [FRAMES, FRAMES, 1, 1, 1, 1, 1, 1, 1, 1]


def test_frame_clusters_become_contiguous_segments() -> None:
    # cluster 1 has only single-frame runs: they join the longer neighbour run (ties: the left one)
    assert contiguous_segments([0, 0, 1, 0, 0, 2, 2, 2, 1]) == [(0, 5), (5, 9)]
    assert contiguous_segments([0, 0, 0, 1, 2, 2]) == [(0, 4), (4, 6)]
    assert contiguous_segments([3, 1, 0, 2]) == [(0, 4)]  # no run longer than a frame: one segment
    # a cluster's shorter runs go to their neighbours; its longest run stays
    assert contiguous_segments([0, 0, 0, 1, 1, 0, 2, 2, 2, 2]) == [(0, 3), (3, 5), (5, 10)]


def test_dpc_knn_finds_one_centre_per_tight_cluster_and_merges_to_the_means() -> None:
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [0.6, 0.0]])
    centers = dpc_knn_centers(points, count=2, knn=3)
    assert sorted(int(center) // 3 for center in centers) == [0, 1]  # one in each cluster, never the stray point
    merged, size = merge_to_centers(points, centers.sort().values)
    assert size.tolist() == [4, 3]  # the stray point joins the nearer cluster
    torch.testing.assert_close(merged, torch.stack([points[[0, 1, 2, 6]].mean(dim=0), points[3:6].mean(dim=0)]))


def test_apportion_is_proportional_and_exact() -> None:
    assert apportion(10, [3, 3, 3, 1]) == [3, 3, 3, 1]
    assert apportion(7, [5, 5]) == [4, 3]
    assert apportion(5, [10, 6, 4]) == [3, 1, 1]


@pytest.mark.parametrize("method", ["prunevid", "holitom"])  # HoliTom merges with PruneVid's steps
def test_padded_frames_are_never_selected_nor_merged(method: str) -> None:
    video = half_static_video().repeat(1, 2, 1, 1)
    frame_mask = torch.tensor([[True, False, True, True, False, True, False, True]])
    out = create_compressor(method, dim=DIM, keep_tokens=12)(video, frame_mask=frame_mask)
    assert not set(out.frame_index[0].tolist()) & {1, 4, 6}
    assert int(out.aux["size"].sum()) == 5 * PER_FRAME


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"keep_tokens": 0}, "keep_tokens"),
        ({"tau": 1.5}, "tau"),
        ({"segment_ratio": 0.0}, "segment_ratio"),
        ({"segment_ratio": 1.5}, "segment_ratio"),
        ({"knn": 0}, "knn"),
    ],
)
def test_bad_arguments_refused(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        create_compressor("prunevid", dim=DIM, **kwargs)
