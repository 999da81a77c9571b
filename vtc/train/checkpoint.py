"""Training checkpoints: trained weights (safetensors), optimizer, scheduler, RNG and data-order state.

Layout under `DIR/checkpoints/`: one folder per kept step (`step-00000100/`), filled under a temporary name and
renamed into place (a folder rename is atomic), and the pointers `last.json` / `best.json`, each replaced
atomically after its folder is complete. Only the last and the best folders are kept. A folder holds
- `model/`: `VideoLMM.save_pretrained` (config + trained weights only, with `encoder.safetensors` for a
  trainable or randomly initialised `tiny` encoder), or `HFVideoLLM.save_pretrained` (config + compressor and LoRA
  weights);
- `optimizer.pt`, `scheduler.pt` (state dicts, loaded with `weights_only=True`);
- `rng-rank{r}.pt`: python, numpy and torch RNG states of each process;
- `state.json`: step, data order (epoch, position, sampler seed), best metric, evaluations without progress, and
  `files`: the sha256 of every other file of the folder, checked on load (`verify_checkpoint`); resuming falls back
  to the newest intact folder when the last one is corrupt or truncated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vtc.integrations.training import HFVideoLLM, is_hf_folder
from vtc.lmm.model import VideoLMM
from vtc.lmm.persistence import encoder_weights
from vtc.utils.io import atomic_write_text

POINTERS = ("last", "best")
STATE_NAME = "state.json"

logger = logging.getLogger(__name__)


class CorruptCheckpointError(ValueError):
    """A checkpoint folder whose files are missing, truncated or altered since it was written."""


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def load_model_weights(model: VideoLMM | HFVideoLLM, directory: Path) -> None:
    """Load the weights `save_pretrained` wrote into an already built `model` (same config)."""
    if isinstance(model, HFVideoLLM):
        model.load_trained(directory)
        return
    loaded = VideoLMM.from_pretrained(directory, llm=model.config["llm"])
    saved = {name for name, parameter in loaded.named_parameters() if parameter.requires_grad}
    if loaded.stores_encoder:
        saved |= {f"encoder.{name}" for name in encoder_weights(loaded.encoder)}
    state = {name: tensor for name, tensor in loaded.state_dict().items() if name in saved}
    model.load_state_dict(state, strict=False)


def load_model(directory: str | os.PathLike, **overrides: Any) -> VideoLMM | HFVideoLLM:
    """A model saved by `save_pretrained` (a checkpoint's `model/` folder), ready for `answer_windows`: a
    `VideoLMM`, or an `HFVideoLLM` (its host loaded from the path its config names; no overrides)."""
    if is_hf_folder(directory):
        if overrides:
            raise ValueError(f"{directory} holds a Hugging Face model, whose config takes no overrides: {overrides}")
        return HFVideoLLM.from_pretrained(directory).eval()
    return VideoLMM.from_pretrained(Path(directory), **overrides).eval()


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states, in types `torch.load(weights_only=True)` reads back."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    keys = saved["keys"].numpy().astype(np.uint32)
    np.random.set_state((saved["kind"], keys, saved["position"], saved["has_gauss"], saved["cached"]))
    torch.set_rng_state(state["torch"])


def fsync_tree(directory: Path) -> None:
    """Flush every file under `directory` to disk (before the folder is renamed into place)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file's bytes (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """`{relative posix path: sha256}` of every file under `folder` but its `state.json`."""
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.name != STATE_NAME)
    return {path.relative_to(folder).as_posix(): sha256_file(path) for path in files}


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """The folder's `state.json` once every file it lists has its recorded sha256 (folders written before hashes
    were recorded are taken as they are); `CorruptCheckpointError` naming the bad file otherwise."""
    state_path = folder / STATE_NAME
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"checkpoint {folder}: cannot read {state_path}: {error}") from error
    for name, expected in state.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise CorruptCheckpointError(f"checkpoint {folder}: {path} is missing")
        found = sha256_file(path)
        if found != expected:
            raise CorruptCheckpointError(
                f"checkpoint {folder}: {path} is corrupt or truncated (sha256 {found[:12]}..., expected "
                f"{expected[:12]}...)"
            )
    return state


def step_of(folder: Path) -> int:
    """The step a `step-XXXXXXXX` folder holds (-1 for another name)."""
    digits = folder.name.removeprefix("step-")
    return int(digits) if digits.isdigit() else -1


class CheckpointStore:
    """Writes and reads the checkpoints of one run (see the module docstring). Collective calls: every process
    calls `save` (each writes its RNG state; the main process writes the rest)."""

    def __init__(self, root: Path, accelerator: Any) -> None:
        self.root = Path(root)
        self.accelerator = accelerator

    def pointer(self, name: str) -> Path | None:
        """The folder a pointer (`last` / `best`) names, or None when there is none yet."""
        path = self.root / f"{name}.json"
        if not path.exists():
            return None
        return self.root / json.loads(path.read_text())["dir"]

    def save(
        self,
        step: int,
        model: VideoLMM | HFVideoLLM,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        state: dict[str, Any],
        best: bool,
    ) -> Path:
        """Write the checkpoint of `step`, point `last` (and `best` when `best`) at it, drop stale folders."""
        accelerator = self.accelerator
        final = self.root / step_name(step)
        staging = self.root / f"{step_name(step)}.tmp"
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        torch.save(rng_state(), staging / f"rng-rank{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            model.save_pretrained(staging / "model")
            torch.save(optimizer.state_dict(), staging / "optimizer.pt")
            torch.save(scheduler.state_dict(), staging / "scheduler.pt")
            record = {**state, "step": step, "files": file_hashes(staging)}
            atomic_write_text(staging / STATE_NAME, json.dumps(record, indent=2))
            fsync_tree(staging)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            for name in POINTERS if best else ("last",):
                atomic_write_text(self.root / f"{name}.json", json.dumps({"dir": final.name, "step": step}))
            keep = {folder.name for folder in (final, self.pointer("best")) if folder is not None}
            for folder in self.root.glob("step-*"):
                if folder.name not in keep:
                    shutil.rmtree(folder, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final

    def candidates(self) -> list[Path]:
        """Checkpoint folders to resume from, in order: the `last` pointer's, then the others, newest first."""
        last = self.pointer("last")
        others = sorted((f for f in self.root.glob("step-*") if step_of(f) >= 0 and f != last), key=step_of)
        return [folder for folder in (last, *reversed(others)) if folder is not None]

    def newest_intact(self) -> tuple[Path, dict[str, Any]]:
        """The first of `candidates()` that `verify_checkpoint` accepts and its state, logging each folder skipped
        and why; `CorruptCheckpointError` listing them all when none is intact."""
        skipped = []
        for folder in self.candidates():
            try:
                return folder, verify_checkpoint(folder)
            except CorruptCheckpointError as error:
                skipped.append(str(error))
                if self.accelerator.is_main_process:
                    logger.warning("skipped %s", error)
        if not skipped:
            raise FileNotFoundError(f"no checkpoint under {self.root}")
        raise CorruptCheckpointError(f"no intact checkpoint under {self.root}: " + "; ".join(skipped))

    def load(self, model: VideoLMM | HFVideoLLM, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler and this process's RNG state from the newest intact checkpoint;
        returns its `state.json`."""
        folder, state = self.newest_intact()
        load_model_weights(model, folder / "model")
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        rank = self.accelerator.process_index
        rng_path = folder / f"rng-rank{rank}.pt"
        if not rng_path.exists():
            raise ValueError(f"{folder} was written by fewer processes: no RNG state for rank {rank}")
        set_rng_state(torch.load(rng_path, weights_only=True))
        return state
