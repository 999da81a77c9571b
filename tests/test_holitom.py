"""`holitom`: global redundancy-aware segmentation, temporal merging of static tokens, spatial merging, exact budget."""

from __future__ import annotations

import pytest
import torch
from test_prunevid import DIM, FRAMES, PER_FRAME, half_static_video  # HoliTom merges with PruneVid's steps

from vtc import create_compressor
from vtc.compressors.holitom import redundancy_segments


def test_segmentation_maximises_the_tokens_temporal_merging_removes() -> None:
    similar = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)  # 5 frames, 3 positions
    # [0, 3) removes 2 static x 2 and [3, 5) 3 x 1 (7 in all), better than [0, 2) + [2, 3) + [3, 5) (3 + 0 + 3)
    assert redundancy_segments(similar, max_window=5) == [(0, 3), (3, 5)]
    assert redundancy_segments(similar, max_window=2) == [(0, 2), (2, 3), (3, 5)]
    assert redundancy_segments(similar, max_window=1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


def test_two_scenes_become_two_segments() -> None:
    scene = torch.eye(DIM)[:8].view(2, PER_FRAME, DIM)
    video = torch.cat([scene[0].expand(3, -1, -1), scene[1].expand(3, -1, -1)])[None]
    out = create_compressor("holitom", dim=DIM, keep_tokens=8)(video)
    assert out.frame_index[0].tolist() == [0] * 4 + [3] * 4
    assert out.aux["size"][0].tolist() == [3] * 8
    torch.testing.assert_close(out.tokens[0], scene.reshape(8, DIM))


def test_static_tokens_merge_once_per_segment_and_dynamic_tokens_stay() -> None:
    video = half_static_video()
    out = create_compressor("holitom", dim=DIM, keep_tokens=2 + 2 * FRAMES)(video)
    assert out.frame_index[0].tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert out.aux["size"][0].tolist() == [FRAMES, FRAMES, 1, 1, 1, 1, 1, 1, 1, 1]
    expected = torch.cat([video[0, 0, :2], video[0, :, 2:].reshape(2 * FRAMES, DIM)])
    torch.testing.assert_close(out.tokens[0], expected)


def test_temporal_merging_stops_where_it_would_go_below_the_budget() -> None:
    video = torch.eye(DIM)[:PER_FRAME].expand(FRAMES, -1, -1)[None]  # fully static: 4 tokens after merging
    out = create_compressor("holitom", dim=DIM, keep_tokens=10)(video)
    assert out.tokens.shape == (1, 10, DIM)
    assert int(out.aux["size"].sum()) == FRAMES * PER_FRAME  # every input token is in exactly one output token


def test_spatial_merging_averages_a_group_down_to_its_share() -> None:
    video = half_static_video()
    out = create_compressor("holitom", dim=DIM, keep_tokens=1)(video)
    assert out.aux["size"][0].tolist() == [FRAMES * PER_FRAME // 2]  # the static group, apportioned the one token
    torch.testing.assert_close(out.tokens[0, 0], video[0, 0, :2].mean(dim=0))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"keep_tokens": 0}, "keep_tokens"),
        ({"tau": 1.5}, "tau"),
        ({"max_window": 0}, "max_window"),
        ({"knn": 0}, "knn"),
    ],
)
def test_bad_arguments_refused(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        create_compressor("holitom", dim=DIM, **kwargs)
