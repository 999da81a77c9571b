"""Full-size dry runs on the meta device: BLIP-2 ViT-g + Q-Former + Flan-T5-XL and CLIP ViT-L/14 + a 7B Llama.

The config folders hold a hand-written `config.json` with the published sizes (Salesforce/blip2-flan-t5-xl,
openai/clip-vit-large-patch14, Llama-2-7B) and the offline tiny tokenizer; no weights, so every model is built on the
meta device (`vtc.lmm.meta`) and nothing full-size is ever materialised.
"""

from __future__ import annotations

import json

import pytest
import yaml

from vtc.bench.cost import lmm_sample_flops
from vtc.cli import main
from vtc.compressors import compressor_class
from vtc.encoders.patch.tokenlearner import tokens_per_layer
from vtc.lmm.meta import build_meta_model, parameter_counts, visual_tokens, weightless_loading
from vtc.lmm.tiny import save_tokenizer

FLAN_T5_XL = {
    "model_type": "t5",
    "d_model": 2048,
    "d_ff": 5120,
    "d_kv": 64,
    "num_heads": 32,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
BLIP2_FLAN_T5_XL = {
    "model_type": "blip-2",
    "num_query_tokens": 32,
    "vision_config": {  # ViT-g/14 without its last layer (BLIP-2 Sec. 3.1): 39 layers
        "hidden_size": 1408,
        "intermediate_size": 6144,
        "num_hidden_layers": 39,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "qkv_bias": True,
    },
    "qformer_config": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "cross_attention_frequency": 2,
        "encoder_hidden_size": 1408,
    },
    "text_config": FLAN_T5_XL,
}
CLIP_VIT_L = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
}
LLAMA_7B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
STAC = {"name": "stac", "keep": 16, "num_heads": 4, "axis": "slots"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    paths = {}
    for name, config, tokenizer in [
        ("blip2", BLIP2_FLAN_T5_XL, True),
        ("clip", CLIP_VIT_L, False),
        ("llama", LLAMA_7B, True),
    ]:
        paths[name] = root / name
        paths[name].mkdir()
        (paths[name] / "config.json").write_text(json.dumps(config))
        if tokenizer:
            save_tokenizer(paths[name])
    return paths


@pytest.fixture(scope="module")
def stac_model(folders):
    """STAC's setup: 4-bit BLIP-2 Flan-T5-XL, LoRA r=8, Top-16 of 32 Q-Former tokens a frame, 16 frames."""
    return build_meta_model(
        {
            "encoder": {"type": "blip2"},
            "llm": {"path": str(folders["blip2"]), "mode": "lora", "load_in_4bit": True},
            "lora": {"r": 8},
            "compressor": STAC,
            "num_frames": 16,
        }
    )


def lora_parameters_t5(rank: int, d_model: int, d_ff: int, layers: int) -> int:
    """LoRA parameters on STAC's T5 targets (q, k, v, o of every attention; wi_0, wi_1, wo): `r (in + out)` each."""
    attention = 4 * rank * 2 * d_model
    feed_forward = 2 * rank * (d_model + d_ff) + rank * (d_ff + d_model)
    return layers * (attention + feed_forward) + layers * (2 * attention + feed_forward)


def test_blip2_flan_t5_xl_has_the_published_sizes(stac_model):
    counts = parameter_counts(stac_model)
    encoder = stac_model.encoder
    vit = sum(p.numel() for p in encoder.vision_model.parameters())
    qformer = sum(p.numel() for p in encoder.qformer.parameters()) + encoder.query_tokens.numel()
    assert vit == pytest.approx(0.986e9, rel=0.005)  # ViT-g, 39 layers: ~1.0B
    assert qformer == pytest.approx(105.2e6, rel=0.005)  # ~107M with BLIP-2's 1.6M language projection
    assert counts["encoder"] == {"total": vit + qformer, "trainable": 0}
    lora = lora_parameters_t5(8, 2048, 5120, 24)
    assert lora == 17_694_720
    # Flan-T5-XL is 2.85B with its own output layer; transformers ties T5's lm_head to the input embeddings (-65.8M)
    assert counts["llm"]["total"] - lora == pytest.approx(2.85e9 - 32128 * 2048, rel=0.005)
    assert counts["llm"]["trainable"] == lora
    assert counts["projector"]["trainable"] == 768 * 2048 + 2048
    trainable = lora + counts["projector"]["trainable"] + counts["compressor"]["trainable"]
    assert counts["all"]["trainable"] == trainable
    assert 0.006 < trainable / counts["all"]["total"] < 0.007  # 0.67%: the paper's 1.22% is not Flan-T5-XL at r=8


def test_stac_gives_16_frames_times_16_slots_and_counts_flops_per_part(stac_model):
    assert visual_tokens(stac_model) == 16 * 16
    flops = lmm_sample_flops(stac_model)
    assert flops["encoder"] == 2 * lmm_sample_flops(stac_model, num_frames=8)["encoder"]  # per frame
    vit_linear = 2 * 16 * 257 * 39 * (4 * 1408 * 1408 + 2 * 1408 * 6144)  # the ViT's matrix products alone
    assert vit_linear < flops["encoder"] < 1.1 * vit_linear
    assert flops["compressor"] is not None and 0 < flops["compressor"] < 1e10
    assert 0.7e12 < flops["language_model"] < 0.9e12
    assert flops["projector"] == 2 * 256 * 768 * 2048  # one linear layer on the 256 kept tokens
    assert flops["total"] == sum(v for part, v in flops.items() if part != "total")
    assert 9.0e12 < flops["total"] < 9.7e12  # Table 2: 12.51 TFLOPs (calflops, Flan-T5-XXL)


def test_in_vit_reduction_is_what_the_dry_run_counts(folders, stac_model):
    llm = {"path": str(folders["blip2"]), "mode": "frozen"}
    tome = build_meta_model({"encoder": {"type": "blip2", "output": "patches", "tome_r": 4}, "llm": llm})
    assert tome.encoder.tokens_per_frame == tokens_per_layer(256, 39, tome_r=4)[-1] == 256 - 39 * 4
    assert visual_tokens(tome, 16) == 16 * (256 - 39 * 4)
    learner = {"type": "blip2", "tokenlearner": {"layer": 20, "num_tokens": 8}}
    learned = build_meta_model({"encoder": learner, "encoder_trainable": True, "llm": llm, "num_frames": 16})
    assert visual_tokens(learned) == 16 * 32  # the Q-Former still gives its 32 queries a frame
    trainable = parameter_counts(learned)["encoder"]["trainable"]
    assert trainable == 2 * 1408 + 1408 * 64 + 64 + 64 * 8 + 8  # TokenLearner v1.1: norm, D -> 64 -> 8
    full, merged = lmm_sample_flops(stac_model)["encoder"], lmm_sample_flops(tome, 16)["encoder"]
    assert 0.5 * full < lmm_sample_flops(learned)["encoder"] < 0.6 * full  # 20 of 39 layers on 257 tokens, then 9
    assert 0.6 * full < merged < 0.8 * full  # 257 -> 101 tokens, 4 fewer a layer


def test_clip_vit_l_with_a_7b_llama_and_mambamia_at_its_paper_size(folders):
    paper = {k: v for k, v in compressor_class("mambamia").card.paper_config.items() if k != "dim"}
    model = build_meta_model(
        {
            "encoder": {"type": "clip", "path": str(folders["clip"])},
            "llm": {"path": str(folders["llama"]), "mode": "lora"},
            "projector": "mlp",
            "compressor": {"name": "mambamia", **paper},
            "num_frames": 128,
        }
    )
    counts = parameter_counts(model)
    assert counts["encoder"]["total"] == pytest.approx(303.2e6, rel=0.005)  # CLIP ViT-L/14 vision tower
    assert counts["llm"]["total"] - counts["llm"]["trainable"] == pytest.approx(6.74e9, rel=0.005)
    assert counts["llm"]["trainable"] == 32 * 2 * 8 * (4096 + 4096)  # peft's default q_proj, v_proj at r=8
    assert counts["compressor"]["total"] == pytest.approx(100e6, rel=0.02)  # MambaMia: ~100M
    assert model.encoder.tokens_per_frame == 256
    assert model.compressor.num_output_tokens(128, 100) == 430  # MambaMia Table 1: 128 frames of 100 tokens
    assert visual_tokens(model) == model.compressor.num_output_tokens(128, 256)
    flops = lmm_sample_flops(model)
    assert flops["compressor"] is None  # too large to run beside a meta model, and not meta-ready
    assert flops["total"] == flops["encoder"] + flops["projector"] + flops["language_model"]


def test_vtc_info_meta_on_a_train_config(folders, tmp_path, capsys):
    config = {"model": {"lmm": {"encoder": {"type": "blip2"}, "compressor": STAC, "num_frames": 16}}}
    path = tmp_path / "stac.yaml"
    path.write_text(yaml.safe_dump(config))
    llm = f"model.lmm.llm={{path: {folders['blip2']}, mode: lora, load_in_4bit: true}}"
    assert main(["info", "--config", str(path), "--meta", "--json", "--set", llm]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["visual_tokens"] == 256 and row["tokens_per_frame"] == 32 and row["load_in_4bit_ignored"]
    assert row["macs"]["total"] == row["flops"]["total"] / 2
    assert main(["info", "--config", str(path), "--meta", "--set", llm]) == 0
    table = capsys.readouterr().out
    assert "16 frames x 32 per frame -> 256 visual tokens" in table and "load_in_4bit is ignored" in table
    assert main(["info", "--meta"]) == 2
    assert "--meta needs --config" in capsys.readouterr().err


def test_weightless_loading_restores_from_pretrained():
    from transformers import AutoModelForCausalLM, PreTrainedModel

    before = (PreTrainedModel.from_pretrained, AutoModelForCausalLM.from_pretrained)
    with weightless_loading():
        assert PreTrainedModel.from_pretrained.__func__ is not before[0].__func__
    assert (PreTrainedModel.from_pretrained, AutoModelForCausalLM.from_pretrained) == before
