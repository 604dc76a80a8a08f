"""Weights files of the real architectures filled with seeded random values (offline testing).

The evaluation networks' pretrained weights (torch-fidelity's InceptionV3, torchvision's
VGG-16 and ResNet-50) cannot be downloaded on offline machines. Tests and benchmarks still
run the *real* graphs by loading files of exactly the right format and shapes whose values
are drawn from a seeded generator. Numbers computed with them are meaningless as scores --
they are for checking code paths, equality with torch-fidelity and speed -- and their
SHA-256 differs from the published files, so results record them as non-official.

A test tool (used by tests/hvqeval and benchmarks/metrics_speed.py), not shipped in the
package. These files are never used implicitly: only an explicit ``--weights`` / ``--inception-weights``
path (or ``$HVQEVAL_INCEPTION_WEIGHTS``) selects them.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

FC_SCALE = 20.0


def _he_normal_(tensor: torch.Tensor, generator: torch.Generator) -> None:
    fan_in = math.prod(tensor.shape[1:])
    tensor.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)


def seeded_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torch-fidelity's InceptionV3 ``state_dict`` (every key and shape) with seeded values.

    The key set comes from torch-fidelity's own module, built without loading anything:
    its constructor loads a file, so it is given an empty one and its ``load_state_dict``
    is bypassed for this one instance.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the architecture only; values come below
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        skeleton = _Skeleton(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty)
        )
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in skeleton.state_dict().items():
        value = torch.empty_like(value)
        if key.endswith("num_batches_tracked"):
            value.zero_()
        elif value.dim() == 4:  # conv kernels
            _he_normal_(value, generator)
        elif key == "fc.weight":
            # Pooled features of a random network vary little between images (std ~0.03 against
            # a mean ~0.9); a wide classifier makes the logits, hence IS, depend on the image.
            value.normal_(0.0, FC_SCALE / math.sqrt(value.shape[1]), generator=generator)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5, generator=generator)
        elif key.endswith("bn.weight"):
            value.uniform_(0.8, 1.2, generator=generator)
        else:  # BN bias / running mean, fc bias
            value.normal_(0.0, 0.1, generator=generator)
        state[key] = value
    _centre_logits(state, generator)
    return state


def _centre_logits(state: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """Make the classifier blind to the mean pooled feature of a few seeded noise images.

    Without it the image-independent part of the features dominates every logit and all
    images fall into one class (IS = 1 for any input), which would hide IS bugs in tests.
    IS reads ``logits_unbiased`` (no bias), so the weight rows are projected instead.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inception.pth"
        torch.save(state, path)
        network = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
        )
    images = torch.randint(
        0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=generator
    )  # (8, 3, 64, 64)
    with torch.no_grad():
        (pooled,) = network(images)  # (8, 2048)
    mean = pooled.mean(dim=0)  # (2048,)
    direction = mean / mean.norm()
    weight = state["fc.weight"]  # (1008, 2048)
    state["fc.weight"] = weight - (weight @ direction)[:, None] * direction[None, :]


def write_seeded_inception(path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_inception_state_dict(seed), path)
    return path


def _torchvision_state(builder, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # torchvision initialises from the global generator
    model = builder(weights=None)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_seeded_vgg16(path: str | Path, seed: int = 0) -> Path:
    """torchvision VGG-16 state_dict (138M parameters, ~550 MB) with torchvision's seeded init."""
    import torchvision

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_torchvision_state(torchvision.models.vgg16, seed), path)
    return path


def write_seeded_resnet50(path: str | Path, seed: int = 0) -> Path:
    """torchvision ResNet-50 state_dict (~100 MB) with torchvision's seeded init."""
    import torchvision

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_torchvision_state(torchvision.models.resnet50, seed), path)
    return path
