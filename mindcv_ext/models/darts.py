"""DARTS-space networks built from a genotype: DropNAS (Hong et al., IJCAI 2020, arXiv 2201.11679)
and DARTS (Liu et al., ICLR 2019).

The op zoo, the cell and the retraining network follow the official DropNAS code
(wiljohnhong/DropNAS, itself built on khanrc/pt.darts): ``models/ops.py``, ``models/augment_cells.py``,
``models/augment_cnn.py``. Differences from quark0/darts: pools keep a BatchNorm in the retrained
network too (so DARTS_V2 here has 3,351,502 parameters, not 3,349,342) and the op order is
``sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5, max_pool_3x3, avg_pool_3x3, skip_connect,
none`` (alphas index this order). ``NetworkImageNet`` is the DARTS mobile-setting network (quark0/darts
``model.py``: two stems, three stride-2 3x3 convs, 14 cells, C = 48) with the same cells.

A genotype is ``Genotype(normal, normal_concat, reduce, reduce_concat)``; ``normal``/``reduce`` list
one entry per intermediate node, each a list of ``(op_name, source_state)`` pairs (states 0 and 1
are the cell inputs). ``load_genotype`` takes a registered name or a ``genotype.json`` path.

In training mode a network with ``auxiliary=True`` returns ``(logits, aux_logits)``; in eval mode
only the logits. Drop-path probability is set per epoch with ``set_drop_path_prob`` (the DropNAS
recipe raises it linearly, ``drop_path_schedule``).
"""
import json
import os
from collections import namedtuple
from typing import Union

from mindspore import nn, ops

from ..layers.drop_path import DropPath
from .registry import Family, register_model

__all__ = ["PRIMITIVES", "PARAMETRIC_OPS", "Genotype", "GENOTYPES", "OPS", "GenotypeError", "load_genotype",
           "save_genotype", "genotype_to_dict", "genotype_from_dict", "NetworkCIFAR", "NetworkImageNet",
           "drop_path_schedule", "dropnas_cifar10", "dropnas_cifar100", "darts_v2", "dropnas_imagenet",
           "darts_v2_imagenet"]

DEFAULT_INPUT = {"dropnas_imagenet": 224, "darts_v2_imagenet": 224,
                 "dropnas_cifar10": 32, "dropnas_cifar100": 32, "darts_v2": 32}
STATUS = "DARTS-space retraining networks, parameter counts tested"

# DropNAS genotypes.py PRIMITIVES (parametric group 0-3, non-parametric 4-7)
PRIMITIVES = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
              "max_pool_3x3", "avg_pool_3x3", "skip_connect", "none")
PARAMETRIC_OPS = frozenset(PRIMITIVES[:4])

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")


class GenotypeError(ValueError):
    """A genotype that is malformed or names an unknown op / genotype."""


def _bn(channels: int, affine: bool = True) -> nn.BatchNorm2d:
    # PyTorch BatchNorm2d(momentum=0.1) == MindSpore momentum 0.9 (weight of the running value)
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9, affine=affine)


def _conv(c_in, c_out, k, stride=1, padding=0, dilation=1, groups=1):
    return nn.Conv2d(c_in, c_out, k, stride=stride, pad_mode="pad", padding=padding, dilation=dilation,
                     group=groups, has_bias=False)


# ----------------------------------------------------------------------------------------------------
# op zoo
# ----------------------------------------------------------------------------------------------------
class StdConv(nn.Cell):
    """ReLU - conv - BN (the cell-input preprocessing)."""

    def __init__(self, c_in, c_out, k=1, stride=1, padding=0, affine=True):
        super().__init__()
        self.relu, self.conv, self.bn = nn.ReLU(), _conv(c_in, c_out, k, stride, padding), _bn(c_out, affine)

    def construct(self, x):
        return self.bn(self.conv(self.relu(x)))


class DilConv(nn.Cell):
    """ReLU - depthwise kxk (dilated) - pointwise 1x1 - BN."""

    def __init__(self, c_in, c_out, k, stride, padding, dilation, affine=True):
        super().__init__()
        self.relu = nn.ReLU()
        self.dw = _conv(c_in, c_in, k, stride, padding, dilation, groups=c_in)
        self.pw = _conv(c_in, c_out, 1)
        self.bn = _bn(c_out, affine)

    def construct(self, x):
        return self.bn(self.pw(self.dw(self.relu(x))))


class SepConv(nn.Cell):
    """Two stacked undilated ``DilConv``; the stride is on the first."""

    def __init__(self, c_in, c_out, k, stride, padding, affine=True):
        super().__init__()
        self.op1 = DilConv(c_in, c_in, k, stride, padding, 1, affine)
        self.op2 = DilConv(c_in, c_out, k, 1, padding, 1, affine)

    def construct(self, x):
        return self.op2(self.op1(x))


class PoolBN(nn.Cell):
    """3x3 max or average pool (pad 1, average excludes the padding) followed by BN."""

    def __init__(self, kind, channels, stride, affine=True):
        super().__init__()
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride, pad_mode="pad", padding=1)
        else:
            self.pool = nn.AvgPool2d(3, stride, pad_mode="pad", padding=1, count_include_pad=False)
        self.bn = _bn(channels, affine)

    def construct(self, x):
        return self.bn(self.pool(x))


class Identity(nn.Cell):
    def construct(self, x):
        return x


class Zero(nn.Cell):
    """The ``none`` op: zeros, subsampled by the stride."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def construct(self, x):
        if self.stride == 1:
            return x * 0.0
        return x[:, :, ::self.stride, ::self.stride] * 0.0


class FactorizedReduce(nn.Cell):
    """ReLU, two 1x1 stride-2 convs to C/2 each (the second on the input shifted by one pixel),
    concatenated, BN."""

    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce: c_out must be even, got {c_out}")
        self.relu = nn.ReLU()
        self.conv1 = _conv(c_in, c_out // 2, 1, 2)
        self.conv2 = _conv(c_in, c_out // 2, 1, 2)
        self.bn = _bn(c_out, affine)

    def construct(self, x):
        x = self.relu(x)
        return self.bn(ops.concat((self.conv1(x), self.conv2(x[:, :, 1:, 1:])), 1))


OPS = {
    "none": lambda c, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda c, stride, affine: PoolBN("avg", c, stride, affine),
    "max_pool_3x3": lambda c, stride, affine: PoolBN("max", c, stride, affine),
    "skip_connect": lambda c, stride, affine: Identity() if stride == 1 else FactorizedReduce(c, c, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}


# ----------------------------------------------------------------------------------------------------
# genotypes
# ----------------------------------------------------------------------------------------------------
_CONCAT = [2, 3, 4, 5]
GENOTYPES = {
    # DropNAS README (CIFAR-10), in the official (op, source) order
    "dropnas_cifar10": Genotype(
        normal=[[("sep_conv_3x3", 1), ("skip_connect", 0)], [("sep_conv_3x3", 1), ("sep_conv_3x3", 0)],
                [("sep_conv_3x3", 1), ("sep_conv_3x3", 0)], [("dil_conv_5x5", 4), ("dil_conv_3x3", 1)]],
        normal_concat=_CONCAT,
        reduce=[[("max_pool_3x3", 0), ("sep_conv_5x5", 1)], [("dil_conv_5x5", 2), ("sep_conv_5x5", 1)],
                [("dil_conv_5x5", 3), ("dil_conv_5x5", 2)], [("dil_conv_5x5", 3), ("dil_conv_5x5", 4)]],
        reduce_concat=_CONCAT),
    # DropNAS img/normal_c100.png, img/reduction_c100.png (order inside a node is not shown there)
    "dropnas_cifar100": Genotype(
        normal=[[("sep_conv_3x3", 1), ("skip_connect", 0)], [("sep_conv_3x3", 1), ("max_pool_3x3", 2)],
                [("sep_conv_3x3", 1), ("sep_conv_5x5", 2)], [("sep_conv_5x5", 1), ("sep_conv_5x5", 0)]],
        normal_concat=_CONCAT,
        reduce=[[("max_pool_3x3", 0), ("sep_conv_5x5", 1)], [("sep_conv_5x5", 1), ("dil_conv_5x5", 2)],
                [("dil_conv_5x5", 2), ("dil_conv_5x5", 3)], [("dil_conv_5x5", 2), ("dil_conv_5x5", 4)]],
        reduce_concat=_CONCAT),
    # quark0/darts genotypes.py DARTS_V2 (flat pair list regrouped two per node)
    "darts_v2": Genotype(
        normal=[[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)], [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)],
                [("sep_conv_3x3", 1), ("skip_connect", 0)], [("skip_connect", 0), ("dil_conv_3x3", 2)]],
        normal_concat=_CONCAT,
        reduce=[[("max_pool_3x3", 0), ("max_pool_3x3", 1)], [("skip_connect", 2), ("max_pool_3x3", 1)],
                [("max_pool_3x3", 0), ("skip_connect", 2)], [("skip_connect", 2), ("max_pool_3x3", 1)]],
        reduce_concat=_CONCAT),
}


def _check_genotype(g: Genotype) -> Genotype:
    for kind in ("normal", "reduce"):
        nodes, concat = getattr(g, kind), list(getattr(g, kind + "_concat"))
        if not nodes:
            raise GenotypeError(f"genotype: '{kind}' has no nodes")
        for i, node in enumerate(nodes):
            for pair in node:
                if len(pair) != 2:
                    raise GenotypeError(f"genotype: {kind} node {i} entry {pair!r} is not (op, source)")
                op, src = pair
                if op not in OPS or op == "none":
                    raise GenotypeError(f"genotype: {kind} node {i} uses unknown op '{op}'")
                if not isinstance(src, int) or not 0 <= src < i + 2:
                    raise GenotypeError(f"genotype: {kind} node {i} reads state {src!r}, valid are 0..{i + 1}")
        if not concat or any(not isinstance(c, int) or not 0 <= c < len(nodes) + 2 for c in concat):
            raise GenotypeError(f"genotype: {kind}_concat {concat!r} must index states 0..{len(nodes) + 1}")
    return g


def genotype_from_dict(d: dict) -> Genotype:
    missing = [k for k in Genotype._fields if k not in d]
    if missing:
        raise GenotypeError(f"genotype: missing keys {missing}")
    node = lambda nodes: [[(str(op), int(src)) for op, src in n] for n in nodes]  # noqa: E731
    return _check_genotype(Genotype(node(d["normal"]), [int(c) for c in d["normal_concat"]],
                                    node(d["reduce"]), [int(c) for c in d["reduce_concat"]]))


def genotype_to_dict(g: Genotype) -> dict:
    return {"normal": [[[op, int(src)] for op, src in n] for n in g.normal],
            "normal_concat": [int(c) for c in g.normal_concat],
            "reduce": [[[op, int(src)] for op, src in n] for n in g.reduce],
            "reduce_concat": [int(c) for c in g.reduce_concat]}


def save_genotype(g: Genotype, path: str) -> None:
    with open(path, "w") as f:
        json.dump(genotype_to_dict(g), f, indent=1)


def load_genotype(name_or_path: Union[str, Genotype, dict]) -> Genotype:
    """A registered genotype name (``GENOTYPES``), a ``genotype.json`` path, a dict or a Genotype."""
    if isinstance(name_or_path, Genotype):
        return _check_genotype(name_or_path)
    if isinstance(name_or_path, dict):
        return genotype_from_dict(name_or_path)
    if name_or_path in GENOTYPES:
        return GENOTYPES[name_or_path]
    if isinstance(name_or_path, str) and os.path.isfile(name_or_path):
        with open(name_or_path) as f:
            try:
                return genotype_from_dict(json.load(f))
            except json.JSONDecodeError as err:
                raise GenotypeError(f"genotype file '{name_or_path}' is not JSON: {err}") from None
    raise GenotypeError(f"genotype '{name_or_path}' is neither a registered name ({', '.join(GENOTYPES)}) "
                        f"nor an existing genotype.json file")


# ----------------------------------------------------------------------------------------------------
# cells and networks
# ----------------------------------------------------------------------------------------------------
class _Path(nn.Cell):
    """An op followed by drop-path (every op but the identity gets one, as in the official code)."""

    def __init__(self, op):
        super().__init__()
        self.op, self.drop_path = op, DropPath(0.0)

    def construct(self, x):
        return self.drop_path(self.op(x))


class Cell(nn.Cell):
    """A discrete cell: two preprocessed inputs, one node per genotype entry summing its ops,
    output = concat of the ``concat`` states."""

    def __init__(self, genotype: Genotype, c_pp, c_p, c, reduction_prev, reduction):
        super().__init__()
        self.reduction = reduction
        self.preproc0 = FactorizedReduce(c_pp, c) if reduction_prev else StdConv(c_pp, c)
        self.preproc1 = StdConv(c_p, c)
        nodes = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        edges, self.sources, self.node_sizes = [], [], []
        for node in nodes:
            self.node_sizes.append(len(node))
            for op_name, src in node:
                op = OPS[op_name](c, 2 if reduction and src < 2 else 1, True)
                edges.append(op if isinstance(op, Identity) else _Path(op))
                self.sources.append(src)
        self.edges = nn.CellList(edges)
        self.sources, self.node_sizes = tuple(self.sources), tuple(self.node_sizes)
        self.out_channels = c * len(self.concat)

    def construct(self, s0, s1):
        states = [self.preproc0(s0), self.preproc1(s1)]
        k = 0
        for n in self.node_sizes:
            s = self.edges[k](states[self.sources[k]])
            for j in range(1, n):
                s = s + self.edges[k + j](states[self.sources[k + j]])
            k += n
            states.append(s)
        return ops.concat([states[i] for i in self.concat], 1)


class AuxHeadCIFAR(nn.Cell):
    """Auxiliary classifier on an 8x8 map: ReLU, AvgPool 5 stride 3 (-> 2x2), 1x1 conv 128, BN, ReLU,
    2x2 conv 768, BN, ReLU, Linear."""

    def __init__(self, channels, num_classes, input_size=8):
        super().__init__()
        self.features = nn.SequentialCell([
            nn.ReLU(), nn.AvgPool2d(5, input_size - 5, pad_mode="valid"), _conv(channels, 128, 1), _bn(128),
            nn.ReLU(), _conv(128, 768, 2), _bn(768), nn.ReLU()])
        self.classifier = nn.Dense(768, num_classes)

    def construct(self, x):
        return self.classifier(ops.flatten(self.features(x)))


class AuxHeadImageNet(nn.Cell):
    """quark0/darts AuxiliaryHeadImageNet on a 7x7 map (its 768-channel BN is left out there, "for
    consistency with the experiments in the paper"; followed here)."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.features = nn.SequentialCell([
            nn.ReLU(), nn.AvgPool2d(5, 2, pad_mode="valid"), _conv(channels, 128, 1), _bn(128), nn.ReLU(),
            _conv(128, 768, 2), nn.ReLU()])
        self.classifier = nn.Dense(768, num_classes)

    def construct(self, x):
        return self.classifier(ops.flatten(self.features(x)))


def drop_path_schedule(epoch: int, epochs: int, max_prob: float = 0.2) -> float:
    """Linear rise of the drop-path probability, ``max_prob * epoch / epochs`` (DropNAS augment.py)."""
    return float(max_prob) * epoch / max(int(epochs), 1)


class _GenotypeNet(nn.Cell):
    def _build_cells(self, genotype, layers, c, c_pp, c_p, reduction_prev, num_classes, aux_cls):
        cells, c_cur, self.aux_pos, aux = [], c, (2 * layers // 3), None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cur *= 2
            cell = Cell(genotype, c_pp, c_p, c_cur, reduction_prev, reduction)
            reduction_prev = reduction
            cells.append(cell)
            c_pp, c_p = c_p, cell.out_channels
            if i == self.aux_pos and aux_cls is not None:
                aux = aux_cls(c_p, num_classes)
        self.layers = nn.CellList(cells)
        self.aux_head = aux
        self.num_features = c_p
        self.classifier = nn.Dense(c_p, num_classes)

    def set_drop_path_prob(self, prob: float) -> None:
        prob = float(prob)
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {prob}")
        for _, cell in self.cells_and_names():
            if isinstance(cell, DropPath):
                cell.drop_prob, cell.keep_prob = prob, 1.0 - prob

    def _check(self, x, min_size):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] < min_size or x.shape[3] < min_size:
            raise ValueError(f"input {tuple(x.shape)} is smaller than the {min_size}x{min_size} minimum")

    def _run_cells(self, s0, s1):
        aux_logits = None
        for i, cell in enumerate(self.layers):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_pos and self.aux_head is not None and self.training:
                aux_logits = self.aux_head(s1)
        logits = self.classifier(ops.mean(s1, (2, 3)))
        if aux_logits is not None:
            return logits, aux_logits
        return logits


class NetworkCIFAR(_GenotypeNet):
    """DropNAS ``AugmentCNN``: stem conv3x3(3, 3C) + BN, ``layers`` cells (reductions at L//3, 2L//3),
    global average pool, Linear; auxiliary head after cell 2L//3."""

    def __init__(self, genotype, num_classes=10, in_channels=3, channels=36, layers=20, auxiliary=False,
                 stem_multiplier=3, drop_path_prob=0.0):
        super().__init__()
        genotype = load_genotype(genotype)
        self.in_channels, self.genotype = in_channels, genotype
        c_stem = stem_multiplier * channels
        self.stem = nn.SequentialCell([_conv(in_channels, c_stem, 3, 1, 1), _bn(c_stem)])
        self._build_cells(genotype, layers, channels, c_stem, c_stem, False, num_classes,
                          AuxHeadCIFAR if auxiliary else None)
        self.set_drop_path_prob(drop_path_prob)

    def construct(self, x):
        self._check(x, 8)
        s = self.stem(x)
        return self._run_cells(s, s)


class NetworkImageNet(_GenotypeNet):
    """DARTS mobile setting: stem0 = conv3x3 s2 (C/2), BN, ReLU, conv3x3 s2 (C), BN; stem1 = ReLU,
    conv3x3 s2, BN (224 -> 28); 14 cells, C = 48; auxiliary head after cell 2L//3."""

    def __init__(self, genotype, num_classes=1000, in_channels=3, channels=48, layers=14, auxiliary=False,
                 drop_path_prob=0.0):
        super().__init__()
        genotype = load_genotype(genotype)
        self.in_channels, self.genotype = in_channels, genotype
        c = channels
        self.stem0 = nn.SequentialCell([_conv(in_channels, c // 2, 3, 2, 1), _bn(c // 2), nn.ReLU(),
                                        _conv(c // 2, c, 3, 2, 1), _bn(c)])
        self.stem1 = nn.SequentialCell([nn.ReLU(), _conv(c, c, 3, 2, 1), _bn(c)])
        self._build_cells(genotype, layers, c, c, c, True, num_classes, AuxHeadImageNet if auxiliary else None)
        self.set_drop_path_prob(drop_path_prob)

    def construct(self, x):
        self._check(x, 64)
        s0 = self.stem0(x)
        return self._run_cells(s0, self.stem1(s0))


# ----------------------------------------------------------------------------------------------------
# registered builders (genotype= overrides the published cell, e.g. a genotype.json from a search)
# ----------------------------------------------------------------------------------------------------
def _cifar(default_genotype, num_classes, in_channels, genotype=None, **kw):
    return NetworkCIFAR(genotype if genotype is not None else default_genotype, num_classes, in_channels, **kw)


def _imagenet(default_genotype, num_classes, in_channels, genotype=None, **kw):
    return NetworkImageNet(genotype if genotype is not None else default_genotype, num_classes, in_channels, **kw)


@register_model
def dropnas_cifar10(num_classes=10, in_channels=3, **kw):
    return _cifar("dropnas_cifar10", num_classes, in_channels, **kw)


@register_model
def dropnas_cifar100(num_classes=100, in_channels=3, **kw):
    return _cifar("dropnas_cifar100", num_classes, in_channels, **kw)


@register_model
def darts_v2(num_classes=10, in_channels=3, **kw):
    return _cifar("darts_v2", num_classes, in_channels, **kw)


@register_model
def dropnas_imagenet(num_classes=1000, in_channels=3, **kw):
    """The CIFAR-10 DropNAS cell transferred to ImageNet (paper section 5.3)."""
    return _imagenet("dropnas_cifar10", num_classes, in_channels, **kw)


@register_model
def darts_v2_imagenet(num_classes=1000, in_channels=3, **kw):
    return _imagenet("darts_v2", num_classes, in_channels, **kw)


FAMILY = Family(input_size=32, input_sizes=dict(DEFAULT_INPUT), mean=(0.4914, 0.4822, 0.4465),
                std=(0.2470, 0.2435, 0.2616), crop_pct=1.0, status=STATUS,
                paper="Hong et al., DropNAS: Grouped Operation Dropout for Differentiable Architecture Search, "
                      "IJCAI 2020; Liu et al., DARTS, ICLR 2019")
