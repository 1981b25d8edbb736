"""The task layer: a task module outside engine/ and cli.py trains, resumes exactly, evaluates and
exports through the same CLI commands; two-phase configs; resume that honours a changed config."""
import json

import numpy as np
import pytest
import yaml

from mindcv_ext.cli import main
from mindcv_ext.config import ConfigError
from mindcv_ext.tasks import get_task, load_config
from mindcv_ext.utils.checkpoint import read_checkpoint, read_meta

from . import pair_task  # noqa: F401  (registers the pair_test task, dataset and model)

PAIR = ["task=pair_test", "model.name=pair_regressor_test", "data.dataset=pair_test", "data.batch_size=16",
        "optim.name=adam", "optim.lr=0.03", "optim.weight_decay=0.0", "sched.name=constant", "train.progress=false",
        "train.jit=true", "data.num_workers=1"]


def pair_cfg(out, *extra):
    return load_config(None, PAIR + [f"train.output_dir={out}"] + list(extra))


def weights(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def test_task_section_is_declared_by_the_task(tmp_path):
    cfg = pair_cfg(tmp_path, "pair.report_every=3")
    assert cfg.pair.report_every == 3 and "quant" not in cfg
    with pytest.raises(ConfigError, match=r"unknown section 'pair' for task 'classification'"):
        load_config(None, ["pair.report_every=3"])
    with pytest.raises(ConfigError, match=r"unknown task 'clasification'.*'classification'"):
        load_config(None, ["task=clasification"])
    adder = load_config("configs/addernet/adder_resnet20_digits.yaml")
    assert adder.quant.calib_batches == 44 and adder.task == "adder_ptq"
    assert "quant" not in load_config("configs/resnet/resnet20_digits.yaml")


@pytest.mark.parametrize("override, message", [
    ("train.epochs=-1", "'train.epochs' is -1"), ("data.batch_size=0", "'data.batch_size' is 0"),
    ("optim.lr=-1", "'optim.lr' is -1"), ("optim.lr=.nan", "'optim.lr' is nan"),
    ('optim.lr="0.1"', "'optim.lr' must be float"), ("train.ema_decay=1.0", "'train.ema_decay' is 1.0"),
    ("data.re_prob=1.5", "'data.re_prob' is 1.5")])
def test_ranges_are_checked_by_name(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_pair_task_trains_resumes_exactly_and_exports(tmp_path, capsys):
    full = get_task("pair_test")(pair_cfg(tmp_path / "full", "train.epochs=3")).build()
    full.fit()
    losses = [r["val_loss"] for r in full.history]
    assert losses[-1] < 0.5 * losses[0], losses
    part = get_task("pair_test")(pair_cfg(tmp_path / "part", "train.epochs=3")).build()
    part.cfg.train.epochs = 2  # stop early, as an interrupted run would
    part.fit()
    resumed = get_task("pair_test")(pair_cfg(tmp_path / "part", "train.epochs=3")).build()
    resumed.fit("auto")
    a, b = weights(full.net), weights(resumed.net)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2]
    # the same task through the CLI: eval and export of the two-input predict cell (both outputs checked)
    sets = sum((["--set", s] for s in PAIR + [f"train.output_dir={tmp_path / 'full'}"]), [])
    cfg_file = tmp_path / "empty.yaml"
    cfg_file.write_text("{}\n")
    capsys.readouterr()
    main(["eval", "-c", str(cfg_file), *sets, "--ckpt", str(tmp_path / "full" / "best.ckpt"), "--json"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["val_loss"] == pytest.approx(min(losses), rel=1e-4)
    main(["export", "-c", str(cfg_file), *sets, "--ckpt", str(tmp_path / "full" / "best.ckpt"),
          "--out", str(tmp_path / "pair")])
    out = capsys.readouterr().out
    assert "2 output(s)" in out and "reloaded and compared on 4 inputs" in out


def test_resume_honours_more_epochs_and_a_lower_lr(tiny_cfg, tmp_path):
    out = tmp_path / "run"
    base = ("data.max_samples=32", "train.max_steps_per_epoch=2", f"train.output_dir={out}", "train.jit=false")
    first = get_task("classification")(tiny_cfg("train.epochs=1", *base)).build()
    first.fit()
    more = get_task("classification")(tiny_cfg("train.epochs=3", "optim.lr=0.001", *base)).build()
    more.fit("auto")
    assert [r["epoch"] for r in more.history] == [0, 1, 2]
    assert more.history[1]["lr"] == pytest.approx(0.001) and more.history[0]["lr"] == pytest.approx(0.05)
    saved = yaml.safe_load(open(out / "config.yaml"))
    assert saved["optim"]["lr"] == 0.001 and saved["train"]["epochs"] == 3


def test_resume_refuses_before_touching_the_run_folder(tiny_cfg, tmp_path):
    out = tmp_path / "run"
    base = ("data.max_samples=32", "train.max_steps_per_epoch=2", f"train.output_dir={out}", "train.jit=false")
    get_task("classification")(tiny_cfg("train.epochs=1", *base)).build().fit()
    before = open(out / "config.yaml").read()
    other = get_task("classification")(tiny_cfg("train.epochs=2", "model.name=resnet32", *base)).build()
    with pytest.raises(ValueError, match="does not fit the model"):
        other.fit("auto")
    changed = get_task("classification")(tiny_cfg("train.epochs=2", "train.max_steps_per_epoch=1", base[0], *base[2:]
                                                  )).build()
    with pytest.raises(ConfigError, match="steps per epoch.*data.batch_size"):
        changed.fit("auto")
    assert open(out / "config.yaml").read() == before


def test_half_written_log_does_not_break_resume(tiny_cfg, tmp_path):
    out = tmp_path / "run"
    base = ("data.max_samples=32", "train.max_steps_per_epoch=1", f"train.output_dir={out}", "train.jit=false")
    get_task("classification")(tiny_cfg("train.epochs=1", *base)).build().fit()
    (out / "log.json").write_text('[{"epoch": 0, "train_lo')
    task = get_task("classification")(tiny_cfg("train.epochs=2", *base)).build()
    task.fit("auto")
    assert [r["epoch"] for r in json.load(open(out / "log.json"))] == [0, 1]
    assert [r["epoch"] for r in read_meta(read_checkpoint(str(out / "last.ckpt")))["history"]] == [0, 1]


def test_extra_group_has_its_own_clip_norm_and_frozen_epoch(tiny_cfg, tmp_path):
    """SNN-MLP's official LIF optimizer: tau/Vth clipped on their own and untouched in epoch 0."""
    cfg = tiny_cfg("model.name=snnmlp_t", "model.kwargs={embed_dim: 8, depths: [1, 1, 1, 1]}", "data.image_size=16",
                   "data.max_samples=32", "train.epochs=2", "train.max_steps_per_epoch=1", "train.jit=false",
                   "optim.name=adamw", "optim.lr=0.01", "train.clip_grad=5.0",
                   "optim.extra_group={filter: lif, lr: 0.001, frozen_epochs: 1, clip_grad: 0.5}",
                   f"train.output_dir={tmp_path / 'run'}")
    task = get_task("classification")(cfg).build()
    ids, norms = task.step_cell.group_ids, task.step_cell.group_norms
    names = [p.name for p in task.step_cell.weights]
    assert norms == (5.0, 0.5) and sum(ids) == sum(n.rsplit(".", 1)[-1] in ("tau", "Vth") for n in names) > 0
    lif_before = {n: p.asnumpy().copy() for n, p in task.net.parameters_dict().items() if n.endswith((".tau", ".Vth"))}
    task.cfg.train.epochs = 1
    task.fit()
    for n, v in lif_before.items():  # epoch 0: the LIF group is frozen
        np.testing.assert_array_equal(task.net.parameters_dict()[n].asnumpy(), v, err_msg=n)
