"""A domain feature extractor: a small classifier for ``shapes`` and Fashion-MNIST.

IS and FID (paper Section 6) are defined with an ImageNet InceptionV3. For the built-in
procedural dataset and Fashion-MNIST that network is both unavailable offline and
uninformative, so the demo evaluates them with a classifier trained on the dataset itself
(the approach of "domain" Inception scores for MNIST-like data). Its weights are written
by ``hvqeval features train`` -- never downloaded -- and results computed with it always
say ``feature_extractor = "domain:<dataset>"`` and carry the weights' SHA-256, so tables
never mix it with Inception numbers.

Network (input uint8 (B, 3, H, W), resized to the trained ``image_size``)::

    [conv3x3 -> BN -> ReLU] x2  (w1)   -> maxpool 2
    [conv3x3 -> BN -> ReLU] x2  (w2)   -> maxpool 2
    [conv3x3 -> BN -> ReLU] x2  (w3)   -> global average pool  = "pool"   (B, w3)  FID/KID/PRC
    linear(w3, classes)                                         = "logits" (B, K)   IS

It is registered in torch-fidelity's feature-extractor registry as ``hvqeval-domain`` so
IS/FID/KID run through the same code path as the Inception network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert

from hvqeval.errors import WeightsError

FORMAT = "hvqeval-domain-classifier"
FORMAT_VERSION = 1
FIDELITY_NAME = "hvqeval-domain"
DEFAULT_WIDTHS = (32, 64, 128)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class DomainClassifier(nn.Module):
    """The classifier; ``features(x)`` returns (pool (B, w3), logits (B, K)) for uint8 input."""

    def __init__(
        self, num_classes: int, image_size: int, widths: tuple[int, int, int] = DEFAULT_WIDTHS
    ):
        super().__init__()
        self.image_size = int(image_size)
        w1, w2, w3 = widths
        self.body = nn.Sequential(
            *_block(3, w1),
            *_block(w1, w1),
            nn.MaxPool2d(2),
            *_block(w1, w2),
            *_block(w2, w2),
            nn.MaxPool2d(2),
            *_block(w2, w3),
            *_block(w3, w3),
        )
        self.head = nn.Linear(w3, num_classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float (B, 3, S, S) in [-1, 1] at the trained resolution S."""
        x = x.to(torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return x / 127.5 - 1.0

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(self.prepare(x))  # (B, w3, S/4, S/4)
        pooled = h.mean(dim=(2, 3))  # (B, w3)
        return pooled, self.head(pooled)  # (B, w3), (B, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


@dataclass(frozen=True)
class DomainWeights:
    """A weights file written by ``hvqeval features train``."""

    dataset: str
    image_size: int
    class_names: list[str]
    widths: tuple[int, int, int]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]

    def build(self) -> DomainClassifier:
        model = DomainClassifier(len(self.class_names), self.image_size, self.widths)
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_weights(
    path: str | Path,
    model: DomainClassifier,
    *,
    dataset: str,
    class_names: list[str],
    meta: dict[str, Any],
) -> None:
    widths = (model.body[0].out_channels, model.body[7].out_channels, model.body[14].out_channels)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "image_size": model.image_size,
        "class_names": list(class_names),
        "widths": list(widths),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_weights(path: str | Path) -> DomainWeights:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"domain classifier weights {path} not found; train them with "
            f"`hvqeval features train --data shapes --out {path}`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise WeightsError(
            f"{path} is not a readable weights file ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a domain classifier written by `hvqeval features train`")
    if payload.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{path}: format_version {payload.get('format_version')} is not supported; retrain"
        )
    return DomainWeights(
        dataset=str(payload["dataset"]),
        image_size=int(payload["image_size"]),
        class_names=list(payload["class_names"]),
        widths=tuple(payload["widths"]),
        state_dict=payload["state_dict"],
        meta=dict(payload.get("meta", {})),
    )


class FeatureExtractorDomain(FeatureExtractorBase):
    """torch-fidelity adapter: features ``pool`` and ``logits`` of a trained DomainClassifier."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        vassert(
            feature_extractor_weights_path is not None,
            "the domain extractor needs its weights file",
        )
        self.classifier = load_weights(feature_extractor_weights_path).build()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        vassert(
            torch.is_tensor(x) and x.dtype == torch.uint8,
            "Expecting image as torch.Tensor with dtype=torch.uint8",
        )
        vassert(x.dim() == 4 and x.shape[1] == 3, f"Input is not Bx3xHxW: {x.shape}")
        pooled, logits = self.classifier.features(x)
        found = {"pool": pooled, "logits": logits}
        return tuple(found[name].to(torch.float32) for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "pool", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pool", "kid": "pool", "prc": "pool"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros([1, 3, 8, 8], dtype=torch.uint8)


def train_classifier(
    train_set,
    val_set,
    *,
    class_names: list[str],
    image_size: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
    widths=DEFAULT_WIDTHS,
    progress: bool = True,
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train on ``(uint8 image, class_id)`` datasets; returns the model and its val accuracy."""
    from torch.utils.data import DataLoader, RandomSampler
    from tqdm import tqdm

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DomainClassifier(len(class_names), image_size, widths).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    sampler = RandomSampler(
        train_set, replacement=True, num_samples=steps * batch_size, generator=generator
    )
    loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True)
    model.train()
    losses = []
    with tqdm(
        total=steps,
        desc="training domain classifier",
        unit="step",
        disable=not progress,
        file=None,
        leave=False,
    ) as bar:
        for images, labels in loader:  # (B, 3, H, W) uint8, (B,)
            images = images.to(device)
            labels = torch.as_tensor(labels).to(device)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in DataLoader(val_set, batch_size=256):
            pred = model(images.to(device)).argmax(dim=1).cpu()
            correct += int((pred == torch.as_tensor(labels)).sum())
            total += len(pred)
    stats = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "val_accuracy": correct / max(1, total),
        "val_size": total,
    }
    return model.cpu(), stats
