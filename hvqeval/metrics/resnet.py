"""ResNet-50 global-average-pool features as a torch-fidelity feature extractor (Appendix H).

The paper (after Brock et al.) shows nearest neighbours in "ResNet-50-avgpool" space:
the 2048-d output of torchvision's ResNet-50 global average pool. torch-fidelity has no
ResNet extractor, so this one is registered in its feature-extractor registry under
``resnet50``; the nearest-neighbour search then uses one path (``create_feature_extractor``)
for ``vgg16`` (torch-fidelity's own, ``fc2_relu`` = fc7) and ``resnet50`` alike.

Preprocessing follows torch-fidelity's VGG-16 extractor: uint8 (B, 3, H, W) -> float,
TensorFlow-1 compatible bilinear resize to 224x224, ImageNet mean/std normalisation.
Weights: ``feature_extractor_weights_path`` (a torchvision ``state_dict`` file); this
module never downloads (``hvqeval.metrics.features`` resolves and checks the file).
"""

from __future__ import annotations

import torch
import torchvision
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet50_preprocess(x: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised float32 (B, 3, size, size), as the VGG-16 extractor does."""
    x = x.to(torch.float32)
    x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)
    mean = torch.tensor([255 * m for m in IMAGENET_MEAN], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor([255 * s for s in IMAGENET_STD], device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class FeatureExtractorResNet50(FeatureExtractorBase):
    """Features ``avgpool`` (B, 2048) and ``logits`` (B, 1000) of torchvision's ResNet-50."""

    INPUT_IMAGE_SIZE = 224

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        vassert(
            feature_extractor_weights_path is not None,
            "resnet50 needs feature_extractor_weights_path (a torchvision ResNet-50 state_dict file)",
        )
        self.model = torchvision.models.resnet50(weights=None)
        state_dict = torch.load(
            feature_extractor_weights_path, map_location="cpu", weights_only=True
        )
        self.model.load_state_dict(state_dict)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        vassert(
            torch.is_tensor(x) and x.dtype == torch.uint8,
            "Expecting image as torch.Tensor with dtype=torch.uint8",
        )
        vassert(x.dim() == 4 and x.shape[1] == 3, f"Input is not Bx3xHxW: {x.shape}")
        m = self.model
        x = resnet50_preprocess(x, self.INPUT_IMAGE_SIZE)  # (B, 3, 224, 224)
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))  # (B, 64, 56, 56)
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))  # (B, 2048, 7, 7)
        pooled = torch.flatten(m.avgpool(x), 1)  # (B, 2048)
        features = {"avgpool": pooled}
        if "logits" in self.features_list:
            features["logits"] = m.fc(pooled)  # (B, 1000)
        return tuple(features[name].to(torch.float32) for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "avgpool", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "avgpool", "kid": "avgpool", "prc": "avgpool"}[metric]

    @staticmethod
    def can_be_compiled():
        return True

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 3, 4, 4]) * 255).to(torch.uint8)
