import os

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms  # noqa: E402
import pytest  # noqa: E402

from mindcv_ext.tasks import load_config  # noqa: E402


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield


@pytest.fixture
def composite_kernels():
    """Every layer built in the test takes its composite twin (restored afterwards)."""
    import ascend_kernels
    ascend_kernels.set_backend("composite")
    yield
    ascend_kernels.set_backend(None)


@pytest.fixture
def tiny_cfg(tmp_path):
    """A resnet20-on-digits config small enough for a few-second run."""
    def make(*overrides):
        base = ["model.name=resnet20", "model.num_classes=10", "data.dataset=digits", "data.image_size=16",
                "data.batch_size=16", "data.num_workers=1", "data.max_samples=128", "data.hflip=0.0",
                "data.scale=[0.8,1.0]", "data.crop_pct=1.0", "train.epochs=2", "train.progress=false",
                f"train.output_dir={tmp_path / 'run'}", "optim.lr=0.05", "sched.name=constant"]
        return load_config(None, base + list(overrides))
    return make
