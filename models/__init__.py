"""Training and sampling stack for hierarchical autoregressive image models (torch only).

Paper: De Fauw, Dieleman, Simonyan 2019, "Hierarchical Autoregressive Image Models with
Auxiliary Decoders". Never imports ``hvqeval``, ``study_app`` or ``analysis``.

This module is the package's public face: other packages import these names from ``models``
and never a submodule (an import-linter contract in ``pyproject.toml`` checks it). Tests may
reach into the submodules they test.

    cards        ModelCard, load_card, list_cards, ...          (models.config)
    data         open_dataset, eval_transform, class names, ...  (models.data, models.datasets)
    train        train_stage, TrainOptions, ensure_codes, ...    (models.train, models.stage_data)
    sample       Hierarchy.sample / decode, Temperatures         (models.hierarchy, models.sampling)
    checkpoints  load_run, load_checkpoint, checkpoint_paths ... (models.checkpoint)
    files        atomic_write_bytes, atomic_write_text,          (models.atomic_write)
                 with_default_mode
    errors       ModelsError and its kinds                       (models.errors)
"""

from models.atomic_write import atomic_write_bytes, atomic_write_text, with_default_mode
from models.checkpoint import (
    CONFIG_FILE,
    checkpoint_path,
    checkpoint_paths,
    init_run_dir,
    load_checkpoint,
    load_run,
    read_run_config,
)
from models.codes import CodesDataset, codes_dir, read_meta
from models.config import (
    ModelCard,
    PriorConfig,
    TrainingConfig,
    compression_ratio,
    downsampling_factor,
    list_cards,
    load_card,
)
from models.data import (
    builtin_class_names,
    class_label,
    eval_transform,
    imagenet_class_names,
    open_dataset,
    train_transform,
)
from models.datasets.check import check_dataset
from models.errors import CheckpointError, ConfigError, DataError, MissingStageError, ModelsError
from models.hierarchy import Hierarchy, PriorModel
from models.launch import PRECISIONS, Launch, resolve_device, setup_launch
from models.prior import Prior
from models.sampling import SAMPLERS, Temperatures
from models.stage import Stage
from models.stage_data import FirstItems, default_data, ensure_codes, open_images
from models.summary import count_parameters, format_count
from models.train import StageResult, optimisation_step, train_stage
from models.train_options import TrainOptions

__all__ = [
    "CONFIG_FILE",
    "CheckpointError",
    "CodesDataset",
    "ConfigError",
    "DataError",
    "FirstItems",
    "Hierarchy",
    "Launch",
    "MissingStageError",
    "ModelCard",
    "ModelsError",
    "PRECISIONS",
    "Prior",
    "PriorConfig",
    "PriorModel",
    "SAMPLERS",
    "Stage",
    "StageResult",
    "Temperatures",
    "TrainOptions",
    "TrainingConfig",
    "atomic_write_bytes",
    "atomic_write_text",
    "with_default_mode",
    "builtin_class_names",
    "check_dataset",
    "checkpoint_path",
    "checkpoint_paths",
    "class_label",
    "codes_dir",
    "compression_ratio",
    "count_parameters",
    "default_data",
    "downsampling_factor",
    "ensure_codes",
    "eval_transform",
    "format_count",
    "imagenet_class_names",
    "init_run_dir",
    "list_cards",
    "load_card",
    "load_checkpoint",
    "load_run",
    "open_dataset",
    "optimisation_step",
    "open_images",
    "read_meta",
    "read_run_config",
    "resolve_device",
    "setup_launch",
    "train_stage",
    "train_transform",
]
