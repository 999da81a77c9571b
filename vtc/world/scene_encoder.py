"""An object-centric perception encoder for the synthetic benchmark, pre-trained on the renderer's scene labels.

The video LLMs of the papers freeze a vision encoder that was pre-trained on millions of images, so its tokens
already say which objects a frame holds. No such encoder exists for the synthetic world, and a CPU cannot train
one from the answer text alone (`benchmarks/frame_probe.py`). `SceneEncoder` is the stand-in: a small fully
convolutional network (a small U-Net with factorised colour and shape heads) that labels every pixel with its object
class (background or one of the 24 colour x shape pairs), trained with the renderer's per-pixel labels
(`vtc.world.pretrain`, about two CPU minutes) and then frozen. Its tokens read the segmentation (each pixel
given to its most likely class) out as one slot per class: a background slot and 24 object slots, each
`[colour one-hot, shape one-hot, area, centre x, centre y]` (median-filtered over neighbouring frames) plus the
change of (area, x, y) from the previous and to the next frame, the temporal context that a video encoder adds to
each frame.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from vtc.encoders.base import VisionEncoder
from vtc.encoders.hf import check_frames
from vtc.world.raster import COLOURS, NUM_OBJECT_CLASSES, SHAPES, object_class_index

STATE = 3  # area, centre x, centre y
# Feature scales that bring each part of a slot to about unit size (a shape covers ~2% of the frame and moves
# ~0.2 of the [-1, 1] range between sampled frames): tokens far smaller than the text embeddings are ignored.
AREA_SCALE, CHANGE_SCALE = 50.0, 5.0
MIN_PIXELS = 4  # a class covering fewer pixels of a frame is taken as absent (stray pixels, not an object)
MEDIAN_FRAMES = 5  # window of the temporal median of the slot states
DEFAULT_WIDTH = 16


def class_attributes() -> Tensor:
    """`[classes, colours + shapes]`: the colour and shape one-hots of every object class (zeros for background)."""
    colours = torch.arange(len(COLOURS)).repeat_interleave(len(SHAPES))
    shapes = torch.arange(len(SHAPES)).repeat(len(COLOURS))
    classes = object_class_index(colours, shapes)
    rows = torch.zeros(NUM_OBJECT_CLASSES, len(COLOURS) + len(SHAPES))
    rows[classes, colours] = 1.0
    rows[classes, len(COLOURS) + shapes] = 1.0
    return rows


def slot_states(probabilities: Tensor) -> Tensor:
    """Soft segmentation `[T, C, H, W]` -> per-class `[T, C, 3]` (`AREA_SCALE` x area as a share of the frame,
    centre x, y in [-1, 1]; the centre of an absent class is 0)."""
    height, width = probabilities.shape[-2:]
    area = probabilities.sum((-2, -1))
    ys = torch.linspace(-1, 1, height, device=probabilities.device)
    xs = torch.linspace(-1, 1, width, device=probabilities.device)
    centre_y = (probabilities.sum(-1) * ys).sum(-1) / area.clamp(min=1.0)
    centre_x = (probabilities.sum(-2) * xs).sum(-1) / area.clamp(min=1.0)
    return torch.stack([area / (height * width) * AREA_SCALE, centre_x, centre_y], dim=-1)


def temporal_changes(states: Tensor) -> Tensor:
    """`[T, C, S]` -> `[T, C, 2S]`: `CHANGE_SCALE` x the change from the previous frame and to the next one (0 at
    the ends)."""
    step = (states[1:] - states[:-1]) * CHANGE_SCALE
    zero = torch.zeros_like(states[:1])
    return torch.cat([torch.cat([zero, step]), torch.cat([step, zero])], dim=-1)


def conv_block(channels_in: int, channels_out: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    """A 3 x 3 convolution (strided to downsample, dilated to widen the view), GroupNorm and GELU."""
    return [
        nn.Conv2d(channels_in, channels_out, 3, stride, padding=dilation, dilation=dilation),
        nn.GroupNorm(min(8, channels_out // 4), channels_out),  # per-frame norm: fast, batch-size-free training
        nn.GELU(),
    ]


def factorised_log_probs(colour_logits: Tensor, shape_logits: Tensor) -> Tensor:
    """Colour logits `[T, 1 + colours, H, W]` (background first) and shape logits `[T, shapes, H, W]` -> class
    log-probabilities `[T, 25, H, W]`: log p(background), then log p(colour) + log p(shape) per `object_class_index`
    (colour-major, as `class_attributes`)."""
    colour, shape = colour_logits.log_softmax(dim=1), shape_logits.log_softmax(dim=1)
    objects = colour[:, 1:, None] + shape[:, None]  # [T, colours, shapes, H, W]
    return torch.cat([colour[:, :1], objects.flatten(1, 2)], dim=1)


class SceneSegmenter(nn.Module):
    """A small U-Net: pixels `[T, 3, H, W]` in [-1, 1] -> class log-probabilities `[T, 25, H, W]`.

    Full resolution (`width` channels) keeps the colour and the outline; 1/2 (2 `width`) and 1/4 resolution
    (4 `width`, one dilated layer) see a whole shape (~11 px across) cheaply; skip connections bring the detail
    back up. Two heads: background + colour (nearly per-pixel) and shape (needs the context), multiplied.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        full, half, quarter = width, 2 * width, 4 * width
        self.stem = nn.Sequential(*conv_block(3, full), *conv_block(full, full))
        self.down1 = nn.Sequential(*conv_block(full, half, stride=2), *conv_block(half, half))
        self.down2 = nn.Sequential(
            *conv_block(half, quarter, stride=2),
            *conv_block(quarter, quarter),
            *conv_block(quarter, quarter, dilation=2),
        )
        self.up1 = nn.Sequential(*conv_block(quarter + half, half))
        self.up0 = nn.Sequential(*conv_block(half + full, full))
        self.head = nn.Conv2d(full, 1 + len(COLOURS) + len(SHAPES), 1)  # background + colours | shapes

    def forward(self, pixels: Tensor) -> Tensor:
        """`[T, 3, H, W]` -> `[T, 25, H, W]` log-probabilities."""
        full = self.stem(pixels)
        half = self.down1(full)
        quarter = self.down2(half)
        half = self.up1(torch.cat([upsample_to(quarter, half), half], dim=1))
        full = self.up0(torch.cat([upsample_to(half, full), full], dim=1))
        logits = self.head(full)
        return factorised_log_probs(logits[:, : 1 + len(COLOURS)], logits[:, 1 + len(COLOURS) :])


def upsample_to(features: Tensor, like: Tensor) -> Tensor:
    """`features` resized (nearest) to the spatial size of `like` (any frame size, not only multiples of 4)."""
    return nn.functional.interpolate(features, size=like.shape[-2:], mode="nearest")


def hard_assignment(log_probs: Tensor, min_pixels: int = MIN_PIXELS) -> Tensor:
    """`[T, C, H, W]` -> each pixel given wholly to its most likely class, classes with fewer than `min_pixels`
    pixels in a frame dropped (forward), with the soft gradient (straight-through): faint, scattered probability
    mass then neither moves a slot's centre nor makes an absent class appear."""
    soft = log_probs.softmax(dim=1)
    hard = nn.functional.one_hot(log_probs.argmax(dim=1), log_probs.shape[1]).permute(0, 3, 1, 2).to(soft.dtype)
    hard = hard * (hard.sum((-2, -1), keepdim=True) >= min_pixels)
    return hard + (soft - soft.detach())  # exactly `hard` forward, the soft gradient backward


def temporal_median(states: Tensor, frames: int = MEDIAN_FRAMES) -> Tensor:
    """`[T, C, S]` -> the median of each frame's states over a window of `frames` frames around it (ends
    repeated): removes perception errors of fewer than `frames / 2` frames and keeps any monotone change (a move,
    a growth, an appearance) exactly."""
    reach = frames // 2
    padded = torch.cat([states[:1].expand(reach, -1, -1), states, states[-1:].expand(reach, -1, -1)])
    return padded.unfold(0, frames, 1).median(dim=-1).values


class SceneEncoder(VisionEncoder):
    """uint8 frames `[T, H, W, 3]` -> `[T, 25, 19]` object slots (see the module docstring); frozen once trained.

    `hard` reads the slots from the per-pixel argmax and `median` filters their states over time (both on by
    default: the slots' changes then come from the objects, not from segmentation noise).
    """

    stores_weights_in_checkpoint = True

    def __init__(
        self, width: int = DEFAULT_WIDTH, path: str | None = None, hard: bool = True, median: bool = True
    ) -> None:
        super().__init__()
        self.segmenter = SceneSegmenter(width)
        self.hard, self.median = hard, median
        self.register_buffer("attributes", class_attributes(), persistent=False)
        self.tokens_per_frame = NUM_OBJECT_CLASSES
        self.output_dim = self.attributes.shape[1] + 3 * STATE
        if path is not None:
            if not Path(path).is_file():
                raise FileNotFoundError(f"scene encoder weights {path} not found (see cached_scene_encoder)")
            self.segmenter.load_state_dict(load_file(path), strict=True)

    def segment(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> per-pixel class log-probabilities (logits) `[T, classes, H, W]`."""
        pixels = frames.to(self.attributes.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.segmenter(pixels)

    def encode(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> `[T, 25, 19]`: per class, its attributes, state and the state's changes."""
        check_frames(frames)
        log_probs = self.segment(frames)
        states = slot_states(hard_assignment(log_probs) if self.hard else log_probs.softmax(dim=1))
        if self.median:
            states = temporal_median(states)
        attributes = self.attributes.expand(len(frames), -1, -1)
        return torch.cat([attributes, states, temporal_changes(states)], dim=-1)
