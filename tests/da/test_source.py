"""Loading a source model fully or in parts (backbone from a plain classifier checkpoint)."""
import numpy as np
import pytest
import mindspore as ms

import mindcv_ext
from mindcv_ext import da
from mindcv_ext.da import SourceCheckpointError


def _mlp(seed):
    ms.set_seed(seed)
    return mindcv_ext.create_model("shot_mlp", num_classes=4, in_features=6, hidden=(8,), bottleneck_dim=5)


def test_full_and_partial_loading(tmp_path):
    src, path = _mlp(0), str(tmp_path / "src.ckpt")
    ms.save_checkpoint(src, path)
    dst = _mlp(1)
    loaded = da.load_source_weights(dst, path)
    assert len(loaded) == len(list(src.get_parameters()))
    for a, b in zip(src.get_parameters(), dst.get_parameters()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())

    # backbone only, from a checkpoint of the bare backbone (keys without the "backbone." prefix)
    bare = str(tmp_path / "backbone.ckpt")
    ms.save_checkpoint([{"name": name, "data": p.value()} for name, p in src.backbone.parameters_and_names()]
                       + [{"name": "fc.weight", "data": ms.Tensor(np.zeros((3, 8), np.float32))}], bare)
    part = _mlp(2)
    classifier_before = part.classifier.weight_v.asnumpy().copy()
    da.load_source_weights(part, bare, parts=["backbone"], checkpoint_prefixes={"backbone": ""})
    np.testing.assert_array_equal(part.backbone.layers[0].weight.asnumpy(), src.backbone.layers[0].weight.asnumpy())
    np.testing.assert_array_equal(part.classifier.weight_v.asnumpy(), classifier_before)


def test_loading_errors(tmp_path):
    src, path = _mlp(0), str(tmp_path / "src.ckpt")
    ms.save_checkpoint(src.backbone, path)
    with pytest.raises(SourceCheckpointError, match=r"missing .*bottleneck\.fc\.weight"):
        da.load_source_weights(_mlp(1), path)
    other = mindcv_ext.create_model("shot_mlp", num_classes=3, in_features=6, hidden=(8,), bottleneck_dim=5)
    full = str(tmp_path / "full.ckpt")
    ms.save_checkpoint(other, full)
    with pytest.raises(SourceCheckpointError, match=r"shape mismatch: classifier\.weight_v"):
        da.load_source_weights(_mlp(1), full)
    with pytest.raises(SourceCheckpointError, match="does not exist"):
        da.load_source_weights(_mlp(1), str(tmp_path / "none.ckpt"))
