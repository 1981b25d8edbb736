import pytest

import mindcv_ext
from mindcv_ext.models.registry import UnknownModelError
from mindcv_ext.utils.summary import count_macs, count_params


def test_unknown_model_lists_close_matches():
    with pytest.raises(UnknownModelError, match=r"Unknown model 'resnet2'.*resnet20"):
        mindcv_ext.create_model("resnet2")


def test_list_models_pattern():
    names = mindcv_ext.list_models("resnet*")
    assert {"resnet18", "resnet34", "resnet50", "resnet20", "resnet32", "resnet56"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name,params", [("resnet18", 11_689_512), ("resnet34", 21_797_672),
                                         ("resnet50", 25_557_032)])
def test_imagenet_resnet_params(name, params):
    # torchvision's published parameter counts for the same layouts
    assert count_params(mindcv_ext.create_model(name)) == params


def test_resnet50_macs():
    macs = count_macs(mindcv_ext.create_model("resnet50"), (1, 3, 224, 224))
    assert abs(macs - 4.09e9) / 4.09e9 < 0.01  # 4.09 GMACs (He et al. report 3.8 GFLOPs without the fc/shortcuts)


def test_cifar_resnet_shapes_and_bad_input():
    import numpy as np
    import mindspore as ms
    net = mindcv_ext.create_model("resnet20", num_classes=7)
    net.set_train(False)
    assert net(ms.Tensor(np.zeros((2, 3, 32, 32), np.float32))).shape == (2, 7)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        net(ms.Tensor(np.zeros((2, 1, 32, 32), np.float32)))
