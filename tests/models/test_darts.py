"""DARTS-space networks: exact parameter counts and MACs of the published cells, genotype I/O,
auxiliary head and drop path, the ImageNet layout.

Figures: DropNAS paper / official code (wiljohnhong/DropNAS, counted with its op zoo: pool-BN kept)
-- DropNAS-C10 3,839,662 (aux head 476,426), DropNAS-C100 4,015,576 (aux 545,636), DARTS_V2 with
these ops 3,351,502; forward MACs at 32x32: 592.0M / 623.0M.
"""
import json

import numpy as np
import pytest
import mindspore as ms

import mindcv_ext
from mindcv_ext.models.darts import (GENOTYPES, GenotypeError, NetworkCIFAR, NetworkImageNet,
                                     drop_path_schedule, load_genotype, save_genotype)
from mindcv_ext.utils.summary import count_macs, count_params


@pytest.mark.parametrize("name,classes,params,aux,macs", [
    ("dropnas_cifar10", 10, 3_839_662, 476_426, 592.0e6),
    ("dropnas_cifar100", 100, 4_015_576, 545_636, 623.0e6),
    ("darts_v2", 10, 3_351_502, 476_426, None),
])
def test_parameter_counts_and_macs(name, classes, params, aux, macs):
    net = mindcv_ext.create_model(name, num_classes=classes, auxiliary=True)
    head = count_params(net.aux_head)
    assert head == aux
    assert count_params(net) - head == params
    if macs is not None:
        net.set_train(False)
        assert abs(count_macs(net, (1, 3, 32, 32)) - macs) / macs < 0.01


def test_genotype_json_roundtrip_and_errors(tmp_path):
    path = str(tmp_path / "genotype.json")
    save_genotype(GENOTYPES["dropnas_cifar10"], path)
    assert load_genotype(path) == GENOTYPES["dropnas_cifar10"]
    net = mindcv_ext.create_model("darts_v2", num_classes=10, genotype=path, channels=4, layers=3)
    assert net.genotype == GENOTYPES["dropnas_cifar10"]
    assert net.aux_head is None  # off by default: `summary` then prints the counts above
    bad = json.load(open(path))
    bad["normal"][1][0] = ["conv_9x9", 0]
    with pytest.raises(GenotypeError, match="unknown op"):
        load_genotype(bad)
    bad["normal"][1][0] = ["sep_conv_3x3", 3]
    with pytest.raises(GenotypeError, match="reads state"):
        load_genotype(bad)
    with pytest.raises(GenotypeError, match="neither"):
        load_genotype("no_such_genotype")


def test_train_mode_aux_and_drop_path():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = NetworkCIFAR("dropnas_cifar10", num_classes=10, channels=4, layers=6, auxiliary=True)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    net.set_train(True)
    logits, aux = net(x)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    net.set_drop_path_prob(drop_path_schedule(300, 600, 0.2))
    probs = {c.drop_prob for _, c in net.cells_and_names() if type(c).__name__ == "DropPath"}
    assert len(probs) == 1 and probs.pop() == pytest.approx(0.1)
    net.set_train(False)
    assert net(x).shape == (2, 10)
    with pytest.raises(ValueError):
        net(ms.Tensor(np.zeros((1, 1, 32, 32), np.float32)))


def test_imagenet_layout():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = NetworkImageNet("darts_v2", num_classes=7, channels=8, layers=3)
    net.set_train(False)
    x = ms.Tensor(np.zeros((1, 3, 64, 64), np.float32))
    s0 = net.stem0(x)
    assert s0.shape == (1, 8, 16, 16) and net.stem1(s0).shape == (1, 8, 8, 8)  # 3 stride-2 convs: /8
    assert net(x).shape == (1, 7)
    assert "dropnas_imagenet" in mindcv_ext.list_models("dropnas_*")
