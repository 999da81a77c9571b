"""`Predictor`: answer many queries about one video, encoding it once (lighthouse's split of `encode_video` and
`predict`), for a vtc `VideoLMM` checkpoint or a Hugging Face video LLM with a compressor inside (`vtc.integrations`).

`encode_video(path)` decodes, encodes and compresses the video and keeps the compressed tokens (and, for a Hugging
Face model, the placeholder text they take in a prompt: on Qwen3-VL a timestamped run per temporal patch);
`answer(query)` only generates. Each answer reports the text, the window it names (`parse_window`, for moment
queries), the number of video tokens the language model received, and the seconds of each stage (`STAGES`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vtc.budget import configure
from vtc.compressors import create_compressor
from vtc.integrations import HOSTS, compress_video_llm
from vtc.integrations.inputs import (
    chat_prompt,
    pixel_inputs,
    placeholder_text,
    token_type_ids,
    video_layout,
    with_placeholders,
)
from vtc.lmm.answers import parse_window
from vtc.lmm.model import VideoLMM, build_compressor, generate_answers
from vtc.video import VideoClip, load_video

STAGES = ("decode", "encode", "compress", "generate")


@dataclass
class Prediction:
    """One answer: the generated `text`, the `(start, end)` seconds it names (None when it names none), the number of
    `video_tokens` the language model received and the `seconds` of each of `STAGES` (the video's, then this
    answer's generation)."""

    text: str
    window: tuple[float, float] | None
    video_tokens: int
    seconds: dict[str, float]


@dataclass
class EncodedVideo:
    """A video ready for queries: its `duration`, `video_tokens`, the seconds of decode / encode / compress, and what
    the backend keeps to generate from (`state`)."""

    duration: float
    video_tokens: int
    seconds: dict[str, float]
    state: Any = field(repr=False)


@contextmanager
def stopwatch(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall-clock seconds of the block (device work finished) to `seconds[stage]`."""
    start = time.perf_counter()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def budget_compressor(name: str, budget: float | None, frames: int, per_frame: int, **config: Any) -> dict[str, Any]:
    """The config of compressor `name` (`{"name": ..., **options}`) that keeps at most `budget` (a fraction in
    (0, 1]) of `frames * per_frame` tokens (`vtc.budget.configure`); `config` alone when there is no budget."""
    if budget is None:
        return {"name": name, **config}
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be a fraction of the video's tokens in (0, 1], got {budget}")
    tokens = max(1, int(budget * frames * per_frame))
    return {"name": name, **configure(name, frames, per_frame, tokens, **config)[0]}


class VideoLMMBackend:
    """A vtc `VideoLMM`: its encoder, then its compressor, projector and LM. `compressor` replaces the checkpoint's
    with a new (untrained) one; `budget` sets its token knob (the checkpoint's own config kept, when it is the
    checkpoint's method), built at the first video's frames and tokens per frame."""

    def __init__(self, model: VideoLMM, compressor: str | None, budget: float | None) -> None:
        self.model = model.eval()
        self.num_frames = int(model.config["num_frames"])
        saved = dict(model.config["compressor"])
        saved_name = saved.pop("name")
        name = compressor or saved_name
        if compressor is None and budget is not None and any(True for _ in model.compressor.parameters()):
            raise ValueError(
                f"budget rebuilds the compressor, and this checkpoint's {name} is trained: pass a compressor to "
                "replace it"
            )
        base = saved if name == saved_name else {}
        self.choice = (name, budget, base) if compressor or budget else None

    def encode(self, clip: VideoClip, seconds: dict[str, float]) -> tuple[Any, int]:
        model = self.model
        with torch.no_grad(), stopwatch(seconds, "encode"):
            batch = {"frames": [clip.frames], "timestamps": [clip.timestamps]}
            features, times, mask, attention = model.encoded_visuals(batch)
        if self.choice is not None:
            name, budget, base = self.choice
            config = budget_compressor(name, budget, *features.shape[1:3], **base)
            model.compressor = build_compressor(config, features.shape[-1], model.token_grid).to(model.device).eval()
            self.choice = None
        with torch.no_grad(), stopwatch(seconds, "compress"):
            compressed = model.compressor(features, times, mask, attention=attention)
        return compressed, int(compressed.num_tokens[0])

    @torch.no_grad()
    def generate(self, compressed: Any, query: str, duration: float) -> tuple[str, tuple[float, float] | None]:
        (text,) = generate_answers(self.model, compressed, [query], [duration])
        return text, self.model.sequence_builder.parse_answer(text, duration).window


class HFBackend:
    """A Hugging Face video LLM (LLaVA-OneVision, Qwen2.5-VL or Qwen3-VL) with `compressor` (default `none`) attached
    at the first video, at `budget` of that video's tokens. Qwen3-VL takes per-frame compressors only (the same
    count in every temporal patch, each written after its timestamp: `vtc.integrations.inputs`)."""

    def __init__(
        self, model: Any, processor: Any, compressor: str | None, budget: float | None, num_frames: int, max_new: int
    ) -> None:
        self.model, self.processor = model.eval(), processor
        self.num_frames, self.max_new_tokens = num_frames, max_new
        self.choice = (compressor or "none", budget)
        self.compression = None
        self.host = HOSTS[type(model).__name__]

    def attach(self, video: dict[str, torch.Tensor]) -> None:
        """Build the compressor for this video's frames and grid and put it into the model (first video only)."""
        frames, per_frame = video_layout(self.model, self.host, video, pooling=True)
        name, budget = self.choice
        config = budget_compressor(name, budget, frames, per_frame)
        width = self.model.config.text_config.hidden_size
        self.compression = compress_video_llm(self.model, create_compressor(dim=width, **config), self.processor)

    def prompt(self, query: str) -> str:
        """The chat prompt of one video and `query` (`vtc.integrations.inputs.chat_prompt`)."""
        return chat_prompt(self.processor, self.host, query)

    def encode(self, clip: VideoClip, seconds: dict[str, float]) -> tuple[Any, int]:
        video = pixel_inputs(self.processor, self.host, [clip.frames])
        if self.compression is None:
            self.attach(video)
        compress = {"seconds": 0.0}
        hooks = timing_hooks(self.compression.compressor, compress)
        with torch.no_grad(), stopwatch(seconds, "encode"):
            pixels = video["pixel_values_videos"].to(self.model.device)
            grid = {"video_grid_thw": video["video_grid_thw"]} if self.host != "llava_onevision" else {}
            encoded = self.model.model.get_video_features(pixels, **grid)
        for hook in hooks:
            hook.remove()
        seconds["encode"] -= compress["seconds"]
        seconds["compress"] = compress["seconds"]
        sources = list(self.compression.sources)
        placeholders = placeholder_text(
            self.compression, self.host, video, 0, clip.timestamps.tolist(), self.model.config.vision_config
        )
        count = len(sources[0]) + self.compression.extra_tokens
        return (encoded, video, sources, placeholders), count

    @torch.no_grad()
    def generate(self, state: Any, query: str, duration: float) -> tuple[str, tuple[float, float] | None]:
        encoded, video, sources, placeholders = state
        text = with_placeholders(self.prompt(query), self.host, placeholders)
        inputs = dict(self.processor.tokenizer([text], return_tensors="pt"))
        if self.host != "llava_onevision":
            inputs["mm_token_type_ids"] = token_type_ids(inputs["input_ids"], self.processor.video_token_id)
            self.compression.sources = sources
        video = {key: value for key, value in video.items() if key != "pixel_values_videos"}
        inputs = {key: value.to(self.model.device) for key, value in {**inputs, **video}.items()}
        output = self.model.generate(
            **inputs, mm_encoder_outputs={"video": encoded}, max_new_tokens=self.max_new_tokens, do_sample=False
        )
        answer = output[0, inputs["input_ids"].shape[1] :]
        text = self.processor.tokenizer.decode(answer, skip_special_tokens=True).strip()
        return text, parse_window(text, duration).window


def timing_hooks(module: torch.nn.Module, total: dict[str, float]) -> list[Any]:
    """Forward hooks adding the seconds of each call of `module` to `total["seconds"]`."""
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(*_: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        total["seconds"] += time.perf_counter() - started.pop()

    return [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


class Predictor:
    """Encode a video once (`encode_video`), then answer any number of queries about it (`answer`), with a vtc
    `VideoLMM` (`VideoLMMBackend`) or a Hugging Face LLaVA-OneVision, Qwen2.5-VL or Qwen3-VL (`HFBackend`)."""

    def __init__(self, backend: VideoLMMBackend | HFBackend) -> None:
        self.backend = backend
        self.video: EncodedVideo | None = None

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        compressor: str | None = None,
        budget: float | None = None,
        num_frames: int = 8,
        max_new_tokens: int = 32,
        processor: Any | None = None,
    ) -> Predictor:
        """A predictor for a vtc `VideoLMM` checkpoint folder or a local Hugging Face video LLM folder (`HOSTS`).

        `compressor` (a registered name) replaces the checkpoint's (default for Hugging Face models: `none`; on
        Qwen3-VL a per-frame one), at `budget`, a fraction of the video's tokens; `num_frames` and `max_new_tokens`
        apply to Hugging Face models (a checkpoint keeps its config's); `processor` replaces the folder's own
        (`AutoProcessor`, local files only).
        """
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        architectures = [name for name in config.get("architectures", []) if name in HOSTS]
        if not architectures:
            return cls(VideoLMMBackend(VideoLMM.from_pretrained(directory), compressor, budget))
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(directory, local_files_only=True)
        processor = processor or AutoProcessor.from_pretrained(directory, local_files_only=True)
        return cls(HFBackend(model, processor, compressor, budget, num_frames, max_new_tokens))

    def encode_video(self, video: str | os.PathLike | VideoClip) -> EncodedVideo:
        """Decode (a path), encode and compress `video`; it is the video of every following `answer`."""
        seconds: dict[str, float] = {}
        with stopwatch(seconds, "decode"):
            clip = video if isinstance(video, VideoClip) else load_video(video, num_frames=self.backend.num_frames)
        state, tokens = self.backend.encode(clip, seconds)
        self.video = EncodedVideo(float(clip.duration), tokens, seconds, state)
        return self.video

    def answer(self, query: str) -> Prediction:
        """Generate the answer to `query` about the encoded video."""
        if self.video is None:
            raise ValueError("no video: call encode_video(path) before answer(query)")
        seconds = dict(self.video.seconds)
        with stopwatch(seconds, "generate"):
            text, window = self.backend.generate(self.video.state, query, self.video.duration)
        return Prediction(text, window, self.video.video_tokens, seconds)
