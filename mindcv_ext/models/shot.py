"""SHOT-style source models for source-free domain adaptation.

The source network of SHOT (Liang et al., ICML 2020; official code tim-learn/SHOT,
``object/network.py``), adopted by later source-free methods such as SFDA-DE (Ding et al., CVPR 2022):

    backbone (ResNet, pooled features) -> bottleneck Linear(C -> 256) + BatchNorm1d
    -> weight-normalised linear classifier (w_k = g_k * v_k / ||v_k||).

The bottleneck output is the feature that adaptation clusters and aligns; the classifier is a
separate sub-cell (``classifier``) so it can be frozen, and its weight rows are the anchors.

``construct`` returns logits (or ``(features, logits)`` with ``return_features=True``);
``forward_features`` gives the bottleneck output and ``forward_head`` the logits of given features,
which is how surrogate source features are classified.

Small variants for CPU runs: ``shot_resnet20`` (CIFAR-layout ResNet-20 backbone, 64-d pooled
features, 64-d bottleneck) and ``shot_mlp`` (a one-hidden-layer MLP backbone on flattened inputs,
the feature-level toy model). Parameter names: ``backbone.*`` (those of ``resnet.py``),
``bottleneck.fc.*``, ``bottleneck.bn.*``, ``classifier.weight_v|weight_g|bias``.
"""
import math
from typing import Dict, Sequence

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Normal, Uniform, XavierNormal, initializer

from .registry import Family, register_model
from .resnet import BasicBlock, Bottleneck, CifarResNet, ResNet

__all__ = ["ShotNet", "ShotBottleneck", "WeightNormDense", "MLPBackbone", "shot_resnet50", "shot_resnet101",
           "shot_resnet20", "shot_mlp", "convert_official_state_dict"]

STATUS = "SHOT source model (bottleneck + weight-normalised classifier), tested"


def _identity_head(in_features, num_classes):
    """Replaces the ResNet fc: the backbone then returns its pooled features."""
    return nn.Identity()


class WeightNormDense(nn.Cell):
    """Linear layer with weight normalisation over each output row (torch ``weight_norm(dim=0)``).

    ``weight = weight_g * weight_v / ||weight_v||_row``; ``weight_g`` has shape (out, 1).
    Initialisation follows what SHOT ends up with: ``v`` as a default Linear init (uniform in
    +-1/sqrt(in)), ``g = ||v||`` per row, bias zero.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        v = initializer(Uniform(bound), (out_features, in_features), ms.float32).init_data().asnumpy()
        self.weight_v = ms.Parameter(ms.Tensor(v), name="weight_v")
        self.weight_g = ms.Parameter(ms.Tensor(np.linalg.norm(v, axis=1, keepdims=True).astype(np.float32)),
                                     name="weight_g")
        self.bias = ms.Parameter(ms.Tensor(np.zeros(out_features, np.float32)), name="bias")
        self.in_features, self.out_features = in_features, out_features

    def weight(self):
        norm = ops.sqrt(ops.sum(self.weight_v * self.weight_v, 1, keepdim=True))
        return self.weight_g * self.weight_v / norm

    def construct(self, x):
        return ops.matmul(x, self.weight().T) + self.bias


class ShotBottleneck(nn.Cell):
    """Linear + BatchNorm1d (SHOT ``feat_bootleneck`` of type 'bn'; its ReLU/dropout are unused there)."""

    def __init__(self, in_features: int, bottleneck_dim: int):
        super().__init__()
        self.fc = nn.Dense(in_features, bottleneck_dim, weight_init=XavierNormal(), bias_init="zeros")
        # SHOT init_weights: BN weight ~ N(1, 0.02), bias 0; PyTorch momentum 0.1 == MindSpore 0.9
        self.bn = nn.BatchNorm1d(bottleneck_dim, momentum=0.9, eps=1e-5,
                                 gamma_init=initializer(Normal(0.02, 1.0), (bottleneck_dim,), ms.float32))

    def construct(self, x):
        return self.bn(self.fc(x))


class MLPBackbone(nn.Cell):
    """Flatten -> (Dense -> ReLU) x len(hidden); ``num_features`` = last hidden width."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (32,)):
        super().__init__()
        layers, width = [], in_features
        for h in hidden:
            layers += [nn.Dense(width, h, weight_init=XavierNormal(), bias_init="zeros"), nn.ReLU()]
            width = h
        self.layers = nn.SequentialCell(layers)
        self.in_features, self.num_features = in_features, width

    def construct(self, x):
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"MLP backbone expects {self.in_features} input values per sample, got {x.shape[1]}")
        return self.layers(x)


class ShotNet(nn.Cell):
    """Backbone -> bottleneck (+BN) -> weight-normalised classifier.

    ``backbone`` is any Cell returning pooled features and exposing ``num_features``.
    """

    def __init__(self, backbone: nn.Cell, num_classes: int, bottleneck_dim: int = 256,
                 return_features: bool = False):
        super().__init__()
        if num_classes < 1 or bottleneck_dim < 1:
            raise ValueError(f"num_classes and bottleneck_dim must be positive, got {num_classes}, {bottleneck_dim}")
        self.backbone = backbone
        self.bottleneck = ShotBottleneck(backbone.num_features, bottleneck_dim)
        self.classifier = WeightNormDense(bottleneck_dim, num_classes)
        self.num_features, self.num_classes = bottleneck_dim, num_classes
        self.return_features = return_features

    def forward_features(self, x):
        """Bottleneck output (after its BN): the feature space that adaptation works in."""
        return self.bottleneck(self.backbone(x))

    def forward_head(self, features):
        return self.classifier(features)

    def features_and_logits(self, x):
        feats = self.forward_features(x)
        return feats, self.classifier(feats)

    def construct(self, x):
        feats = self.forward_features(x)
        logits = self.classifier(feats)
        if self.return_features:
            return feats, logits
        return logits

    def classifier_weights(self) -> np.ndarray:
        """Effective classifier weight rows (num_classes, bottleneck_dim): the adaptation anchors."""
        return self.classifier.weight().asnumpy()


def _resnet_backbone(block, layers, in_channels):
    return ResNet(block, layers, num_classes=1, in_channels=in_channels, head=_identity_head)


@register_model
def shot_resnet50(num_classes=31, in_channels=3, bottleneck_dim=256, **kw):
    """SHOT source model on ResNet-50 (Office-31 / Office-Home)."""
    return ShotNet(_resnet_backbone(Bottleneck, [3, 4, 6, 3], in_channels), num_classes, bottleneck_dim, **kw)


@register_model
def shot_resnet101(num_classes=12, in_channels=3, bottleneck_dim=256, **kw):
    """SHOT source model on ResNet-101 (VisDA-2017)."""
    return ShotNet(_resnet_backbone(Bottleneck, [3, 4, 23, 3], in_channels), num_classes, bottleneck_dim, **kw)


@register_model
def shot_resnet20(num_classes=10, in_channels=3, bottleneck_dim=64, **kw):
    """CPU variant: CIFAR-layout ResNet-20 backbone (64-d pooled features), 64-d bottleneck."""
    backbone = CifarResNet(20, 1, in_channels, head=_identity_head, block=BasicBlock)
    return ShotNet(backbone, num_classes, bottleneck_dim, **kw)


@register_model
def shot_mlp(num_classes=10, in_channels=1, in_features=None, hidden=(32,), bottleneck_dim=32, **kw):
    """CPU toy variant: MLP backbone on ``in_features`` flattened values (default: 8x8 images)."""
    in_features = in_channels * 64 if in_features is None else in_features
    return ShotNet(MLPBackbone(in_features, tuple(hidden)), num_classes, bottleneck_dim, **kw)


_CONVERTIBLE = ("shot_resnet50", "shot_resnet101")


def convert_official_state_dict(state_dict: Dict[str, np.ndarray], model_name: str) -> Dict[str, np.ndarray]:
    """Map SHOT's three source files (``source_F.pt``, ``source_B.pt``, ``source_C.pt``), merged into one
    dict with the prefixes ``netF.``, ``netB.``, ``netC.``, onto this module's names.

    netF (torchvision ResNet without fc) -> ``backbone.*``; netB ``bottleneck``/``bn`` ->
    ``bottleneck.fc``/``bottleneck.bn``; netC ``fc.weight_g|weight_v|bias`` -> ``classifier.*``.
    BatchNorm entries are renamed to gamma/beta/moving_mean/moving_variance.
    """
    from .keymaps import ConversionError, bn_key_map

    if model_name not in _CONVERTIBLE:
        raise ConversionError(f"convert_official_state_dict (shot): unknown model '{model_name}' "
                              f"(one of {', '.join(_CONVERTIBLE)})")
    keys = [k for k in state_dict if not k.endswith("num_batches_tracked")]
    if not any(k.startswith("netF.") for k in keys) or "netC.fc.weight_v" not in state_dict:
        raise ConversionError("this does not look like a SHOT source model: expected 'netF.*', 'netB.*' and "
                              f"'netC.fc.weight_v' entries (first keys: {', '.join(keys[:5])})")
    renames = (("netF.", "backbone."), ("netB.bottleneck.", "bottleneck.fc."), ("netB.bn.", "bottleneck.bn."),
               ("netC.fc.", "classifier."))

    def rename(key):
        for src, dst in renames:
            if key.startswith(src):
                return dst + key[len(src):]
        raise ConversionError(f"{model_name}: unexpected SHOT key '{key}'")

    out, done = {}, set()
    for prefix in sorted(k[:-len(".running_mean")] for k in keys if k.endswith(".running_mean")):
        for torch_key, ms_key in bn_key_map(prefix, rename(prefix + ".x")[:-2]):
            if torch_key not in state_dict:
                raise ConversionError(f"{model_name}: incomplete BatchNorm '{prefix}', missing {torch_key}")
            out[ms_key] = np.asarray(state_dict[torch_key])
            done.add(torch_key)
    for key in keys:
        if key not in done:
            out[rename(key)] = np.asarray(state_dict[key])
    return out


def _is_head(name: str) -> bool:
    """Bottleneck and classifier: SHOT trains them at 10x the backbone's lr (``optim.extra_group``)."""
    return name.startswith(("bottleneck.", "classifier."))


FAMILY = Family(converter=convert_official_state_dict, param_filters={"head": _is_head},
                input_sizes={"shot_resnet20": 32, "shot_mlp": 8},
                paper="Liang et al., Do We Really Need to Access the Source Data? (SHOT), ICML 2020; "
                      "Ding et al., Source-Free Domain Adaptation via Distribution Estimation, CVPR 2022")
