import pytest

from mindcv_ext.config import ConfigError, parse_override
from mindcv_ext.tasks import load_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "model: {name: resnet20}\noptim: {lr: 0.2}\n"),
                      ["optim.lr=0.05", "data.scale=[0.5, 1.0]", "train.clip_grad=null"])
    assert cfg.optim.lr == 0.05 and cfg.data.scale == [0.5, 1.0] and cfg.train.clip_grad is None
    assert cfg.sched.name == "cosine" and cfg.task == "classification"
    assert isinstance(load_config(None, ["optim.lr=1"]).optim.lr, float)  # int accepted for a float key


def test_unknown_key_is_named_with_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'optim.weigth_decay'.*weight_decay"):
        load_config(write(tmp_path, "model: {name: resnet20}\noptim: {weigth_decay: 0.1}\n"))


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section 'optimizer'"):
        load_config(write(tmp_path, "optimizer: {lr: 0.1}\n"))


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'data.batch_size' must be int"):
        load_config(write(tmp_path, "model: {name: resnet20}\ndata: {batch_size: big}\n"))
    with pytest.raises(ConfigError, match=r"'train.ema' must be bool"):
        load_config(None, ["train.ema=3"])


def test_choice_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"'sched.name' is 'cosin'.*cosine"):
        load_config(None, ["sched.name=cosin"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))


def test_override_syntax():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")


def test_every_shipped_config_validates():
    import glob
    paths = sorted(glob.glob("configs/**/*.yaml", recursive=True))
    assert paths
    for path in paths:
        load_config(path)


def test_exponent_without_dot_reads_as_float(tmp_path):
    cfg = load_config(write(tmp_path, "optim: {lr: 1e-3, weight_decay: 5e-5}\n"), ["sched.min_lr=1e-6"])
    assert cfg.optim.lr == 1e-3 and cfg.optim.weight_decay == 5e-5 and cfg.sched.min_lr == 1e-6
