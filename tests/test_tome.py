"""ToMe: bipartite soft matching against a plain re-implementation, time order, and the HF vision tower patch."""

from __future__ import annotations

import numpy
import pytest
import torch
from transformers import (
    Blip2VisionConfig,
    Blip2VisionModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from vtc.compressors import create_compressor
from vtc.compressors.tome import merge_steps, merge_to, merge_tokens, tokens_after_merging
from vtc.encoders.patch import ToMeState, patch_vision_tower
from vtc.encoders.patch.clip import attend


def reference_merge(x, r, metric, size):
    """The published algorithm for one video, with loops: returns (rows, sizes, surviving positions)."""
    count = x.shape[0]
    r = min(r, count // 2)
    normed = metric / metric.norm(dim=-1, keepdim=True)
    a_positions, b_positions = list(range(0, count, 2)), list(range(1, count, 2))
    best = []
    for a in a_positions:
        similarities = [float(normed[a] @ normed[b]) for b in b_positions]
        match = max(range(len(b_positions)), key=lambda j: similarities[j])
        best.append((similarities[match], a, b_positions[match]))
    merged = sorted(best, key=lambda item: -item[0])[:r]
    groups = {position: [position] for position in range(count)}
    for _, a, b in merged:
        groups[b].append(a)
        del groups[a]
    survivors = sorted(groups)
    rows = [sum(x[p] * size[p] for p in groups[s]) / sum(size[p] for p in groups[s]) for s in survivors]
    sizes = [sum(size[p] for p in groups[s]) for s in survivors]
    return torch.stack(rows), torch.stack(sizes), survivors


def sort_rows(rows):
    """Rows sorted lexicographically, to compare two sets of rows as multisets."""
    return rows[torch.from_numpy(numpy.lexsort(rows.T.flip(0).numpy()))]


@pytest.mark.parametrize(("count", "r"), [(8, 3), (9, 4), (9, 100), (5, 1), (2, 1)])
def test_merge_tokens_matches_the_published_algorithm(count, r):
    torch.manual_seed(count * 10 + r)
    x = torch.randn(3, count, 6, dtype=torch.float64)
    metric = torch.randn(3, count, 4, dtype=torch.float64)
    size = torch.randint(1, 4, (3, count, 1)).double()
    merged, merged_size, index = merge_tokens(x, r, metric=metric, size=size)
    removed = min(r, count // 2)
    assert merged.shape == (3, count - removed, 6) and index.shape == (3, count)
    for row in range(3):
        rows, sizes, survivors = reference_merge(x[row], r, metric[row], size[row])
        with_size = torch.cat([merged[row], merged_size[row]], dim=1)
        expected = torch.cat([rows, sizes], dim=1)
        torch.testing.assert_close(sort_rows(with_size), sort_rows(expected), atol=1e-5, rtol=1e-5)
        # Time order: the k-th output row is the k-th surviving position.
        torch.testing.assert_close(merged[row], rows, atol=1e-5, rtol=1e-5)
        assert index[row, survivors].tolist() == list(range(len(survivors)))


def test_sizes_always_sum_to_n_and_unmerged_tokens_keep_their_order():
    torch.manual_seed(0)
    x = torch.randn(4, 20, 8)
    merged, size, index = merge_tokens(x, 7)
    assert torch.equal(size.sum(dim=1).squeeze(-1), torch.full((4,), 20.0))
    assert torch.equal(torch.bincount(index[0], minlength=13).float(), size[0, :, 0])
    alone = size[..., 0] == 1
    for row in range(4):
        sources = [int((index[row] == slot).nonzero()) for slot in alone[row].nonzero().squeeze(1)]
        assert sources == sorted(sources)
        torch.testing.assert_close(merged[row, alone[row]], x[row, sources])


def test_metric_defaults_to_the_tokens_and_r_zero_is_identity():
    x = torch.randn(2, 7, 5)
    torch.testing.assert_close(merge_tokens(x, 2)[0], merge_tokens(x, 2, metric=x.clone())[0])
    merged, size, index = merge_tokens(x, 0)
    assert torch.equal(merged, x) and torch.equal(index[0], torch.arange(7)) and (size == 1).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\[B, N, D\]"):
        merge_tokens(torch.randn(4, 5), 1)
    with pytest.raises(ValueError, match="metric"):
        merge_tokens(torch.randn(1, 4, 5), 1, metric=torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="size"):
        merge_tokens(torch.randn(1, 4, 5), 1, size=torch.ones(1, 4))


def test_merge_to_composes_steps_into_one_index():
    torch.manual_seed(1)
    x = torch.randn(2, 50, 4)
    steps, current = merge_steps(50, 7), 50
    for r in steps:
        assert 1 <= r <= current // 2
        current -= r
    assert current == 7
    merged, size, index = merge_to(x, 7)
    assert merged.shape == (2, 7, 4)
    for slot in range(7):
        torch.testing.assert_close(merged[0, slot], x[0, index[0] == slot].mean(dim=0))
        assert size[0, slot, 0] == (index[0] == slot).sum()


def test_clip_scope_counts_order_and_earliest_frame():
    torch.manual_seed(2)
    model = create_compressor("tome", dim=8, num_tokens=10)
    tokens = torch.randn(2, 4, 9, 8)
    frame_mask = torch.tensor([[True, True, True, True], [False, True, False, True]])
    out = model(tokens, frame_mask=frame_mask)
    assert out.tokens.shape == (2, 10, 8) and out.mask.all()
    assert out.aux["size"].sum(dim=1).tolist() == [36.0, 18.0]
    assert set(out.frame_index[1].tolist()) <= {1, 3}
    assert (out.frame_index.diff(dim=1) >= 0).all()
    torch.testing.assert_close(out.timestamps, out.frame_index.float())
    # Earliest source frame: the first output token always contains the video's first token.
    assert out.frame_index[:, 0].tolist() == [0, 1]


def test_frame_scope_merges_each_frame_and_keeps_everything_when_target_is_large():
    model = create_compressor("tome", dim=8, num_tokens=4, scope="frame")
    tokens = torch.randn(1, 3, 9, 8)
    out = model(tokens)
    assert out.tokens.shape == (1, 12, 8) and out.frame_index[0].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert out.aux["size"].reshape(3, 4).sum(dim=1).tolist() == [9.0, 9.0, 9.0]
    identity = create_compressor("tome", dim=8, num_tokens=100)(tokens)
    torch.testing.assert_close(identity.tokens, tokens.reshape(1, 27, 8))


def test_bad_config_raises():
    with pytest.raises(ValueError, match="scope"):
        create_compressor("tome", dim=8, scope="video")
    with pytest.raises(ValueError, match="num_tokens"):
        create_compressor("tome", dim=8, num_tokens=0)


VITS = {
    "blip2": (Blip2VisionConfig, Blip2VisionModel, True),
    "clip": (CLIPVisionConfig, CLIPVisionModel, True),
    "siglip": (SiglipVisionConfig, SiglipVisionModel, False),
}


def tiny_vit(kind):
    config_class, model_class, _ = VITS[kind]
    torch.manual_seed(0)
    config = config_class(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    return model_class(config).eval()


@pytest.mark.parametrize("kind", list(VITS))
def test_patched_vit_removes_r_tokens_per_layer_and_never_merges_the_class_token(kind):
    model = tiny_vit(kind)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(pixel_values=pixels).last_hidden_state
        patch_vision_tower(model, r=2)
        after = model(pixel_values=pixels).last_hidden_state
    class_tokens = int(VITS[kind][2])
    assert before.shape[1] == 16 + class_tokens
    assert after.shape == (2, 16 + class_tokens - 3 * 2, 32)
    assert tokens_after_merging(16, 2, 3) == 16 - 3 * 2
    size = next(m for m in model.modules() if isinstance(getattr(m, "_tome_state", None), ToMeState))._tome_state.size
    assert size.sum(dim=1).squeeze(-1).tolist() == [16.0 + class_tokens] * 2
    if class_tokens:
        assert (size[:, 0] == 1).all()


@pytest.mark.parametrize("kind", list(VITS))
def test_patch_with_r_zero_equals_the_original_under_either_attention_implementation(kind):
    """The patched layers compute attention themselves: with r = 0 they must give what the unpatched tower gives
    through Hugging Face's own `sdpa` and `eager` attention (two code paths that are not ours), whichever the
    model is set to afterwards."""
    model = tiny_vit(kind)
    pixels = torch.randn(1, 3, 32, 32)
    references = {}
    with torch.no_grad():
        for implementation in ("sdpa", "eager"):
            model.set_attn_implementation(implementation)
            references[implementation] = model(pixel_values=pixels).last_hidden_state
        patch_vision_tower(model, r=0)
        for implementation, reference in references.items():
            model.set_attn_implementation(implementation)
            patched = model(pixel_values=pixels).last_hidden_state
            torch.testing.assert_close(patched, reference, atol=1e-5, rtol=1e-5, msg=implementation)
        patch_vision_tower(model, r=3)
        merged = model(pixel_values=pixels).last_hidden_state
    assert merged.shape[1] == references["sdpa"].shape[1] - 9


def test_proportional_attention_counts_a_merged_token_as_its_size():
    """Two identical size-1 keys get the same total attention as one such key of size 2 (ToMe Eq. 1)."""
    attention = next(module for module in tiny_vit("clip").modules() if hasattr(module, "self_attn")).self_attn
    torch.manual_seed(3)
    x = torch.randn(1, 4, 32)
    duplicated = torch.cat([x, x[:, 3:]], dim=1)
    with torch.no_grad():
        out_duplicated, _ = attend(attention, duplicated, None)
        out_sized, _ = attend(attention, x, torch.tensor([[[1.0], [1.0], [1.0], [2.0]]]))
    torch.testing.assert_close(out_sized, out_duplicated[:, :4], atol=1e-5, rtol=1e-5)


def test_tokens_after_merging_caps_each_step_at_half():
    assert tokens_after_merging(16, 2, 3) == 10
    assert tokens_after_merging(16, 100, 2) == 4
    assert tokens_after_merging(5, 0, 4) == 5


def test_only_supported_towers_are_patched():
    from transformers import CLIPTextConfig, CLIPTextModel

    text = CLIPTextModel(
        CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    )
    with pytest.raises(ValueError, match="blip_2_vision_model, clip_vision_model, siglip_vision_model"):
        patch_vision_tower(text, r=2)
    with pytest.raises(ValueError, match="r must be"):
        patch_vision_tower(tiny_vit("clip"), r=-1)
