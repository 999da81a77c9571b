"""Training checkpoints: trained weights (safetensors), optimizer, scheduler, RNG and data-order state.

Layout under `DIR/checkpoints/`: one folder per kept step (`step-00000100/`), filled under a temporary name and
renamed into place (a folder rename is atomic), and the pointers `last.json` / `best.json`, each replaced
atomically after its folder is complete. Only the last and the best folders are kept. A folder holds
- `model/`: `VideoLMM.save_pretrained` (config + trained weights only, with `encoder.safetensors` for a
  trainable or randomly initialised `tiny` encoder);
- `optimizer.pt`, `scheduler.pt` (state dicts, loaded with `weights_only=True`);
- `rng-rank{r}.pt`: python, numpy and torch RNG states of each process;
- `state.json`: step, data order (epoch, position, sampler seed), best metric, evaluations without progress.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vtc.lmm.model import VideoLMM
from vtc.utils.io import atomic_write_text

POINTERS = ("last", "best")


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def load_model_weights(model: VideoLMM, directory: Path) -> None:
    """Load the weights `save_pretrained` wrote into an already built `model` (same config)."""
    loaded = VideoLMM.from_pretrained(directory, llm=model.config["llm"])
    saved = {name for name, parameter in loaded.named_parameters() if parameter.requires_grad}
    if loaded.stores_encoder:
        saved |= {f"encoder.{name}" for name in loaded.encoder.state_dict()}
    state = {name: tensor for name, tensor in loaded.state_dict().items() if name in saved}
    model.load_state_dict(state, strict=False)


def load_model(directory: str | os.PathLike, **overrides: Any) -> VideoLMM:
    """A model saved by `save_pretrained` (a checkpoint's `model/` folder), ready for `answer_windows`."""
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
        model: VideoLMM,
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
            atomic_write_text(staging / "state.json", json.dumps({**state, "step": step}, indent=2))
            fsync_tree(staging)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            pointers = {"last": final, "best": final if best else self.pointer("best")}
            for name, folder in pointers.items():
                if folder is not None:
                    atomic_write_text(self.root / f"{name}.json", json.dumps({"dir": folder.name, "step": step}))
            keep = {folder.name for folder in pointers.values() if folder is not None}
            for folder in self.root.glob("step-*"):
                if folder.name not in keep:
                    shutil.rmtree(folder, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final

    def load(
        self, model: VideoLMM, optimizer: torch.optim.Optimizer, scheduler: Any, name: str = "last"
    ) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler and this process's RNG state; returns `state.json`."""
        folder = self.pointer(name)
        if folder is None:
            raise FileNotFoundError(f"no {name!r} checkpoint under {self.root}")
        load_model_weights(model, folder / "model")
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        rank = self.accelerator.process_index
        rng_path = folder / f"rng-rank{rank}.pt"
        if not rng_path.exists():
            raise ValueError(f"{folder} was written by fewer processes: no RNG state for rank {rank}")
        set_rng_state(torch.load(rng_path, weights_only=True))
        return json.loads((folder / "state.json").read_text())
