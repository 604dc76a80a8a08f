"""Run folders and checkpoints (format version 1).

A run folder holds one hierarchy being trained stage by stage (Algorithm 1)::

    runs/<name>/
      config.json          resolved model card (the same dict is inside every checkpoint)
      level1.pt ...        one checkpoint per autoencoder level (1-based, bottom first)
      prior.pt             the class-conditional prior on the top codes
      codes/level1/        codes of level 1's encoder = the input of level 2 (or the prior)
      log.jsonl            one JSON object per logged step, every stage

A checkpoint is a ``torch.save`` dict of plain tensors and containers (loadable with
``weights_only=True``)::

    format_version   1
    model_class      "LevelModel" | "PriorModel"
    model_config     {"card": <resolved card dict>, "stage": "level1" | ... | "prior"}
    state_dict       raw (trained) weights
    ema_state_dict   Polyak-averaged weights: the ones evaluated and sampled
    optimizer        Adam state
    step             optimiser steps taken
    rng_state        {"torch", "cuda", "numpy", "python"} generator states
    code_version     version of the package that wrote it

Files are written atomically (temporary file in the same folder, then ``os.replace``), so a
run stopped at any moment keeps its last complete checkpoint.
"""

from __future__ import annotations

import json
import random
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.atomic_write import atomic_write_bytes, atomic_write_text
from models.config import ModelCard, card_from_dict
from models.errors import CheckpointError, MissingStageError
from models.stage import Stage

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
KEYS = (
    "format_version",
    "model_class",
    "model_config",
    "state_dict",
    "ema_state_dict",
    "optimizer",
    "step",
    "rng_state",
    "code_version",
)


def code_version() -> str:
    try:
        return metadata.version("hvqeval")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def checkpoint_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / f"{stage}.pt"


def checkpoint_paths(run_dir: str | Path) -> dict[str, Path]:
    """Existing checkpoints of a run, ``{stage: path}`` in training order."""
    run_dir = Path(run_dir)
    card = read_run_config(run_dir)
    return {
        s: checkpoint_path(run_dir, s)
        for s in Stage.all_of(card)
        if checkpoint_path(run_dir, s).is_file()
    }


# --------------------------------------------------------------------------------------
# Run configuration


def read_run_config(run_dir: str | Path) -> ModelCard:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a run folder (no {CONFIG_FILE}); train a model into it first",
            argument="run_dir",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{path} is not valid JSON ({err}); delete the run folder and train again"
        ) from None
    return card_from_dict(data, str(path))


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """Dotted key of the first value that differs between two nested dicts/lists."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                return where
            found = first_difference(a[key], b[key], where)
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{prefix} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{prefix}.{i}")
            if found:
                return found
        return None
    return None if a == b else prefix


def _value_at(data: Any, where: str) -> Any:
    """The value at a dotted key of ``first_difference`` ("(not set)" where one side lacks it)."""
    for part in where.split(" (")[0].split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, (list, tuple)) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return "(not set)"
    return data


def init_run_dir(run_dir: str | Path, card: ModelCard) -> None:
    """Create the run folder with ``config.json``, or check that it belongs to this card."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if path.is_file():
        existing = read_run_config(run_dir)
        was, now = existing.to_dict(), card.to_dict()
        diff = first_difference(was, now)
        if diff:
            if existing.name != card.name:
                raise CheckpointError(
                    f"run folder {run_dir} was started with card '{existing.name}', which differs from "
                    f"this card '{card.name}' at '{diff}'; use a new run folder, or the same card and "
                    "overrides",
                    argument="run_dir",
                )
            # Same card, other --set values: say which value, not "card X differs from card X".
            raise CheckpointError(
                f"run folder {run_dir} was started with {diff} = {_value_at(was, diff)!r}, but this card "
                f"gives {_value_at(now, diff)!r}; continue the run with the card and overrides it was "
                "started with (its config.json), or use a new run folder",
                argument="run_dir",
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, card.to_json() + "\n")


# --------------------------------------------------------------------------------------
# RNG state


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if (
        "cuda" in state
        and torch.cuda.is_available()
        and len(state["cuda"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


# --------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(
    path: str | Path,
    *,
    model_class: str,
    card: ModelCard,
    stage: str,
    state_dict: dict,
    ema_state_dict: dict,
    optimizer: dict,
    step: int,
) -> None:
    """Write a checkpoint atomically (see the module docstring for the format)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model_class": model_class,
        "model_config": {
            "card": card.to_dict(),
            "stage": str(stage),
        },  # plain str: weights_only loads
        "state_dict": _to_cpu(state_dict),
        "ema_state_dict": _to_cpu(ema_state_dict),
        "optimizer": _to_cpu(optimizer),
        "step": int(step),
        "rng_state": capture_rng_state(),
        "code_version": code_version(),
    }
    atomic_write_bytes(Path(path), lambda f: torch.save(payload, f))


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def load_checkpoint(
    path: str | Path, card: ModelCard | None = None, stage: str | None = None
) -> dict[str, Any]:
    """Read and validate a checkpoint; with ``card``/``stage``, check that it belongs to them."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: torch raises several types
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}); "
            "delete it and train this stage again"
        ) from None
    if not isinstance(ckpt, dict) or set(KEYS) - set(ckpt):
        raise CheckpointError(
            f"{path} is not an hvqeval checkpoint (missing keys); "
            "delete it and train this stage again"
        )
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, this version reads "
            f"format {FORMAT_VERSION}; retrain or use the matching hvqeval version ({ckpt['code_version']})"
        )
    saved_card = ckpt["model_config"]["card"]
    saved_stage = ckpt["model_config"]["stage"]
    if card is not None:
        diff = first_difference(saved_card, card.to_dict())
        if diff and saved_card["model"]["name"] == card.name:  # same card, other --set values
            raise CheckpointError(
                f"checkpoint {path} was trained with {diff} = {_value_at(saved_card, diff)!r}, not "
                f"{_value_at(card.to_dict(), diff)!r}; use the run folder's own card (its config.json), or "
                "a new run folder for this one"
            )
        if diff:
            raise CheckpointError(
                f"checkpoint {path} was trained with card '{saved_card['model']['name']}', which differs "
                f"from card '{card.name}' at '{diff}'; use that card, or a new run folder for this one"
            )
    if stage is not None and saved_stage != stage:
        raise CheckpointError(f"checkpoint {path} holds stage '{saved_stage}', expected '{stage}'")
    return ckpt


def checkpoint_card(ckpt: dict[str, Any], source: str = "<checkpoint>") -> ModelCard:
    """The resolved card a checkpoint was trained with."""
    return card_from_dict(ckpt["model_config"]["card"], source)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", require_prior: bool = False):
    """The trained hierarchy of a run with Polyak-averaged weights, in eval mode.

    Levels are loaded bottom-up as long as their checkpoints exist; the prior if present
    (``require_prior`` makes its absence an error, as sampling needs it).
    """
    from models.hierarchy import Hierarchy, build_stage_model

    run_dir = Path(run_dir)
    card = read_run_config(run_dir)

    def load(stage: str):
        ckpt = load_checkpoint(checkpoint_path(run_dir, stage), card, stage)
        model = build_stage_model(card, stage)
        model.load_state_dict(ckpt["ema_state_dict"], strict=True)
        return model

    levels = []
    for stage in Stage.all_of(card)[:-1]:
        if not checkpoint_path(run_dir, stage).is_file():
            break
        levels.append(load(stage))
    if not levels and card.level:
        raise MissingStageError(
            f"{run_dir} has no trained level yet; train its stages first",
            run_dir=str(run_dir),
            card_name=card.name,
            stage=Stage.of_level(1),
        )
    prior = None
    if len(levels) == len(card.level) and checkpoint_path(run_dir, "prior").is_file():
        prior = load("prior")
    elif require_prior:
        raise MissingStageError(
            f"{run_dir} has no trained prior yet; train the prior (after every level)",
            run_dir=str(run_dir),
            card_name=card.name,
            stage=Stage.PRIOR,
        )
    hierarchy = Hierarchy(card, levels, prior)
    return hierarchy.to(device).eval()
