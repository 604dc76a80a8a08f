"""Model cards: frozen dataclasses loaded from TOML (paper Appendix A and Table 4).

A card describes a whole hierarchy (Algorithm 1): one ``[[level]]`` table per autoencoder,
bottom (pixels) first, and one ``[prior]`` table for the class-conditional prior on the top
codes. A hierarchy with L levels in the paper's sense has L-1 autoencoders and one prior.

Loading is strict: unknown keys, wrong types and out-of-range values raise ``ConfigError``
naming the file, the key and the allowed values. The resolved card (every default filled in)
is what ``to_dict`` returns; it is written next to every run and inside every checkpoint.

Data flow of one level (shapes for the 128x128 feed-forward card)::

    x_l   (B, 3, 128, 128) uint8 pixels, or (B, C_in, H_in, W_in) codes of level l-1
      | encoder: ResNet (v2 pre-activation) + strided convs, factor H_in / H_code
    z_l   (B, C_code, 32, 32) integer codes, 2**bits values per channel  (= x_{l+1})
      | modulator (pixel-shuffle upsampling) -> per-layer biases of the local model
    p(x_l | z_l)  gated PixelCNN over x_l

A card with no ``[[level]]`` table is a one-level model in the paper's sense: the prior is a
class-conditional gated PixelCNN directly on the pixels (the Appendix D baseline), its "top
codes" are the image itself (3 channels of 8 bits at ``image_size``) and its NLL is exact.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from models.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli (a dependency there)
    import tomli as tomllib

# Paper, Appendix A: masks per image as a function of the MSP mask size.
MSP_MASKS_PER_IMAGE = {1: 30, 3: 30, 5: 10, 7: 10, 9: 3, 11: 3, 13: 3, 15: 3, 17: 1, 19: 1}

PIXEL_BITS = 8  # full bit-depth RGB (paper Section 7)


def default_masks_per_image(mask_size: int) -> int:
    """Masks per image for an MSP mask size, by the paper's rule (Appendix A)."""
    try:
        return MSP_MASKS_PER_IMAGE[mask_size]
    except KeyError:
        raise ConfigError(
            f"mask size {mask_size} has no default number of masks per image "
            f"(the paper covers {sorted(MSP_MASKS_PER_IMAGE)}); set masks_per_image"
        ) from None


@dataclass(frozen=True)
class ResNetConfig:
    """A residual net of ``layers`` pre-activation blocks (ReLU-3x3-ReLU-1x1), Appendix A."""

    layers: int
    hidden: int
    bottleneck: int


@dataclass(frozen=True)
class CodesConfig:
    """The VQ bottleneck: ``channels`` code channels of ``bits`` bits at ``resolution``."""

    channels: int
    bits: int
    resolution: int
    commitment: float = 0.25  # beta of the VQ-VAE commitment loss (not given in the paper)
    ema_decay: float = 0.99  # codebook EMA (exponentially smoothed k-means, VQ-VAE appendix)

    @property
    def num_codes(self) -> int:
        return 2**self.bits


@dataclass(frozen=True)
class AuxDecoderConfig:
    """Auxiliary decoder that trains the encoder: feed-forward (Alg. 2) or MSP (Alg. 3).

    For ``kind = "msp"`` the teacher is a residual net on masked one-hot input; the
    auxiliary decoder is the student's head on the quantised codes.
    """

    kind: Literal["feedforward", "msp"]
    layers: int
    hidden: int
    bottleneck: int
    mask_size: int | None = None
    masks_per_image: int | None = None
    teacher: ResNetConfig | None = None


@dataclass(frozen=True)
class LocalModelConfig:
    """Gated PixelCNN local model of the autoregressive decoder (van den Oord et al. 2016)."""

    layers: int
    hidden: int
    kernel_size: int = 5  # not given in the paper


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of one stage (one level's autoencoder, or the prior)."""

    iterations: int
    batch_size: int
    optimizer: Literal["adam"] = "adam"
    learning_rate: float = 3e-4  # not given in the paper
    polyak_decay: float = 0.9999  # Appendix A
    crop: int = 64  # Appendix A: train on 64x64 crops unless the input is already <= 64


@dataclass(frozen=True)
class LevelConfig:
    """One autoencoder of the hierarchy: encoder, quantiser, auxiliary and AR decoders."""

    codes: CodesConfig
    encoder: ResNetConfig
    aux_decoder: AuxDecoderConfig
    modulator: ResNetConfig
    local_model: LocalModelConfig
    training: TrainingConfig


@dataclass(frozen=True)
class PriorConfig:
    """Class-conditional gated PixelCNN + self-attention prior on the top codes (Table 4)."""

    layers: int  # l
    hidden: int  # h
    residual_hidden: int  # r
    timing: Literal["add", "concat"]
    attention_layers: int  # a
    attention_heads: int  # ah
    dropout: float  # do
    training: TrainingConfig  # bs, iters
    kernel_size: int = 5  # not given in the paper


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    dataset: str
    image_size: int
    num_classes: int
    source: str = ""
    image_channels: int = 3


@dataclass(frozen=True)
class CardNote:
    """Where a card value comes from when it is not read straight off the paper.

    ``key`` is a card key (``prior.residual_hidden``, ``level.1.aux_decoder.hidden``); ``kind``
    says whether the value is missing from the paper or an interpretation of what it says;
    ``text`` gives the reasoning (and, for paper figures under another convention, both).
    """

    key: str
    kind: Literal["not in paper", "interpretation", "paper convention"]
    text: str


@dataclass(frozen=True)
class ModelCard:
    """A whole hierarchy: ``levels`` bottom-up, then the prior on the last level's codes.

    ``level`` may be empty: the prior then models the pixels (single-level PixelCNN baseline).
    """

    model: ModelInfo
    # kw_only so the default can precede ``prior`` while keeping the saved key order.
    level: tuple[LevelConfig, ...] = field(default=(), kw_only=True)
    prior: PriorConfig
    note: tuple[
        CardNote, ...
    ] = ()  # [[note]] tables: provenance of values (printed by `models show`)
    path: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def levels(self) -> tuple[LevelConfig, ...]:
        return self.level

    def level_input(self, index: int) -> tuple[int, int, int]:
        """(channels, values per channel, resolution) of the input of level ``index`` (0-based)."""
        if index == 0:
            return self.model.image_channels, 2**PIXEL_BITS, self.model.image_size
        codes = self.level[index - 1].codes
        return codes.channels, codes.num_codes, codes.resolution

    @property
    def is_single_level(self) -> bool:
        """True for a card without autoencoders: one PixelCNN on pixels, exact likelihood."""
        return not self.level

    @property
    def top_codes(self) -> CodesConfig:
        """What the prior models: the last level's codes, or the pixels of a single-level card."""
        if not self.level:
            info = self.model
            return CodesConfig(
                channels=info.image_channels, bits=PIXEL_BITS, resolution=info.image_size
            )
        return self.level[-1].codes

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path")
        data["level"] = list(data["level"])
        data["note"] = list(data["note"])
        if not data["note"]:
            data.pop("note")  # cards without notes keep their resolved form unchanged
        return data

    def notes_for(self, key: str) -> list[CardNote]:
        return [n for n in self.note if n.key == key]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


# --------------------------------------------------------------------------------------
# Strict loading from plain data


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, str(tp)
    )


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], where, source)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{source}: key '{where}' must be {_type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):  # empty: a card without autoencoder levels
            raise ConfigError(f"{source}: key '{where}' must be an array of tables")
        return tuple(_convert(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{where}' must be a table, got {value!r}")
        return _build(tp, value, where, source)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: key '{where}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{where}' must be an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: key '{where}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r}")  # programming error, not user input


def _build(cls: type, data: dict[str, Any], where: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "path"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; allowed keys here: "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name not in data:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise ConfigError(f"{source}: missing key '{key}' ({_type_name(hints[name])})")
            continue
        kwargs[name] = _convert(data[name], hints[name], key, source)
    return cls(**kwargs)


# --------------------------------------------------------------------------------------
# Semantic validation


def _check_positive(source: str, key: str, value: int | float) -> None:
    if value <= 0:
        raise ConfigError(f"{source}: key '{key}' must be > 0, got {value!r}")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _validate_resnet(source: str, key: str, cfg: ResNetConfig, min_layers: int = 0) -> None:
    if cfg.layers < min_layers:
        raise ConfigError(f"{source}: key '{key}.layers' must be >= {min_layers}, got {cfg.layers}")
    _check_positive(source, f"{key}.hidden", cfg.hidden)
    _check_positive(source, f"{key}.bottleneck", cfg.bottleneck)


def _validate_training(source: str, key: str, cfg: TrainingConfig) -> None:
    _check_positive(source, f"{key}.iterations", cfg.iterations)
    _check_positive(source, f"{key}.batch_size", cfg.batch_size)
    _check_positive(source, f"{key}.learning_rate", cfg.learning_rate)
    _check_positive(source, f"{key}.crop", cfg.crop)
    if not 0.0 <= cfg.polyak_decay < 1.0:
        raise ConfigError(
            f"{source}: key '{key}.polyak_decay' must be in [0, 1), got {cfg.polyak_decay}"
        )


def _validate_kernel(source: str, key: str, k: int) -> None:
    if k < 1 or k % 2 == 0:
        raise ConfigError(f"{source}: key '{key}' must be an odd integer >= 1, got {k}")


def validate(card: ModelCard, source: str) -> ModelCard:
    """Check the values of a structurally valid card; return it with defaults resolved."""
    info = card.model
    _check_positive(source, "model.image_size", info.image_size)
    _check_positive(source, "model.num_classes", info.num_classes)
    if info.image_channels != 3:
        raise ConfigError(
            f"{source}: key 'model.image_channels' must be 3 (RGB), got {info.image_channels}"
        )
    resolved_levels = []
    for i, lvl in enumerate(card.level):
        key = f"level[{i}]"
        _, _, in_res = card.level_input(i)
        codes = lvl.codes
        if not 1 <= codes.bits <= 16:
            raise ConfigError(
                f"{source}: key '{key}.codes.bits' must be in 1..16, got {codes.bits}"
            )
        _check_positive(source, f"{key}.codes.channels", codes.channels)
        _check_positive(source, f"{key}.codes.resolution", codes.resolution)
        if in_res % codes.resolution != 0 or not _is_power_of_two(in_res // codes.resolution):
            raise ConfigError(
                f"{source}: key '{key}.codes.resolution' = {codes.resolution} must divide the "
                f"input resolution {in_res} by a power of two (e.g. {in_res // 2}, {in_res // 4})"
            )
        if not 0.0 < codes.ema_decay < 1.0:
            raise ConfigError(
                f"{source}: key '{key}.codes.ema_decay' must be in (0, 1), got {codes.ema_decay}"
            )
        if codes.commitment < 0:
            raise ConfigError(
                f"{source}: key '{key}.codes.commitment' must be >= 0, got {codes.commitment}"
            )
        _validate_resnet(source, f"{key}.encoder", lvl.encoder)
        _validate_resnet(source, f"{key}.modulator", lvl.modulator)
        _check_positive(source, f"{key}.local_model.layers", lvl.local_model.layers)
        _check_positive(source, f"{key}.local_model.hidden", lvl.local_model.hidden)
        _validate_kernel(source, f"{key}.local_model.kernel_size", lvl.local_model.kernel_size)
        _validate_training(source, f"{key}.training", lvl.training)
        factor = in_res // codes.resolution
        crop = min(lvl.training.crop, in_res)
        if crop % factor != 0:
            raise ConfigError(
                f"{source}: key '{key}.training.crop' = {lvl.training.crop} must be divisible by "
                f"the downsampling factor {factor}"
            )
        aux = lvl.aux_decoder
        _validate_resnet(
            source, f"{key}.aux_decoder", ResNetConfig(aux.layers, aux.hidden, aux.bottleneck)
        )
        if aux.kind == "msp":
            if aux.mask_size is None:
                raise ConfigError(
                    f"{source}: missing key '{key}.aux_decoder.mask_size' (odd integer) for kind 'msp'"
                )
            if aux.mask_size < 1 or aux.mask_size % 2 == 0:
                raise ConfigError(
                    f"{source}: key '{key}.aux_decoder.mask_size' must be an odd integer >= 1 "
                    f"(a mask of size 2s+1 around the predicted pixel), got {aux.mask_size}"
                )
            if aux.teacher is None:
                raise ConfigError(
                    f"{source}: missing table '{key}.aux_decoder.teacher' for kind 'msp'"
                )
            _validate_resnet(source, f"{key}.aux_decoder.teacher", aux.teacher, min_layers=1)
            masks = aux.masks_per_image
            if masks is None:
                try:
                    masks = default_masks_per_image(aux.mask_size)
                except ConfigError as err:
                    raise ConfigError(f"{source}: key '{key}.aux_decoder': {err}") from None
            _check_positive(source, f"{key}.aux_decoder.masks_per_image", masks)
            aux = dataclasses.replace(aux, masks_per_image=masks)
        else:
            for name in ("mask_size", "masks_per_image", "teacher"):
                if getattr(aux, name) is not None:
                    raise ConfigError(
                        f"{source}: key '{key}.aux_decoder.{name}' only applies to kind 'msp'; "
                        'remove it or set kind = "msp"'
                    )
        resolved_levels.append(dataclasses.replace(lvl, aux_decoder=aux))
    prior = card.prior
    for name in ("layers", "hidden", "residual_hidden", "attention_heads"):
        _check_positive(source, f"prior.{name}", getattr(prior, name))
    if prior.attention_layers < 0 or prior.attention_layers > prior.layers:
        raise ConfigError(
            f"{source}: key 'prior.attention_layers' must be in 0..{prior.layers} (prior.layers), "
            f"got {prior.attention_layers}"
        )
    # No divisibility rule between heads and hidden: Table 4 pairs h = 640 with ah = 15, so
    # attention projects to its own per-head width (PixelSNAIL style) instead of splitting h.
    if not 0.0 <= prior.dropout < 1.0:
        raise ConfigError(f"{source}: key 'prior.dropout' must be in [0, 1), got {prior.dropout}")
    _validate_kernel(source, "prior.kernel_size", prior.kernel_size)
    _validate_training(source, "prior.training", prior.training)
    return dataclasses.replace(card, level=tuple(resolved_levels))


# --------------------------------------------------------------------------------------
# Public entry points


def card_from_dict(data: dict[str, Any], source: str = "<card>") -> ModelCard:
    """Build and validate a card from parsed TOML (or a saved ``config.json``)."""
    card = _build(ModelCard, data, "", source)
    card = validate(card, source)
    _check_note_keys(card, source)
    return dataclasses.replace(card, path=source)


def _check_note_keys(card: ModelCard, source: str) -> None:
    """Every ``[[note]]`` must name a key of the card (``level.1.aux_decoder.hidden``)."""
    data = card.to_dict()
    for i, note in enumerate(card.note):
        node: Any = data
        for part in note.key.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node and part != "note":
                node = node[part]
            else:
                raise ConfigError(
                    f"{source}: note[{i}].key {note.key!r} is not a key of this card "
                    "(write it like prior.residual_hidden or level.1.aux_decoder.hidden)"
                )


def _parse_override_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set model.dataset=fashion_mnist


def apply_overrides(
    data: dict[str, Any], overrides: typing.Iterable[str], source: str
) -> dict[str, Any]:
    """Apply ``key=value`` overrides (``level.0.training.iterations=100``) to raw card data.

    Values are parsed as TOML (``3e-4``, ``true``, ``"text"``); keys must already exist so a
    typo fails loudly instead of being ignored.
    """
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"{source}: override {item!r} must look like key=value (e.g. level.0.training.iterations=100)"
            )
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"{source}: override key '{key}': '{part}' must be a level index 0..{len(node) - 1}"
                    )
                if last:
                    node[int(part)] = _parse_override_value(text)
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict) or part not in node:
                if isinstance(node, dict) and last:
                    node[part] = _parse_override_value(text)  # strict loading rejects unknown keys
                    break
                raise ConfigError(f"{source}: override key '{key}' does not exist in the card")
            if last:
                node[part] = _parse_override_value(text)
            else:
                node = node[part]
    return data


def builtin_cards_dir() -> Path:
    return Path(str(resources.files("models.configs")))


def list_cards() -> list[str]:
    """Names of the model cards shipped in ``models/configs``."""
    return sorted(p.stem for p in builtin_cards_dir().glob("*.toml"))


def resolve_card_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"model card file {path} does not exist")
        return path
    candidate = builtin_cards_dir() / f"{name_or_path}.toml"
    if not candidate.is_file():
        raise ConfigError(
            f"unknown model card '{name_or_path}'; built-in cards: {', '.join(list_cards())} "
            "(or pass a path to a .toml file)"
        )
    return candidate


def read_card_data(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    path = resolve_card_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return data, str(path)


def load_card(name_or_path: str | Path, overrides: typing.Iterable[str] = ()) -> ModelCard:
    """Load a card by built-in name (``tiny_ff``) or path, apply overrides, validate."""
    data, source = read_card_data(name_or_path)
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(data, overrides, source)
    return card_from_dict(data, source)


def downsampling_factor(card: ModelCard, index: int) -> int:
    """Spatial factor between level ``index``'s input and its codes (a power of two)."""
    return card.level_input(index)[2] // card.level[index].codes.resolution


def compression_ratio(card: ModelCard, index: int) -> float:
    """Bits in / bits out of one level (the paper's 48x for 128x128 -> 32x32x1x8 bits)."""
    channels, values, res = card.level_input(index)
    codes = card.level[index].codes
    bits_in = channels * res * res * math.log2(values)
    bits_out = codes.channels * codes.resolution**2 * codes.bits
    return bits_in / bits_out
