"""The instance_seg3d task: training through the engine, exact resume, inference files, datasets,
the demo's grouping table and the learned pipeline's AP50."""
import os

import numpy as np
import pytest

from mindcv_ext.data.registry import DatasetError, create_dataset
from mindcv_ext.tasks import get_task
from mindcv_ext.tasks.registry import load_config
from mindcv_ext.tasks.instance_seg3d import grouping_table

CFG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "maskgroup", "maskgroup_rooms_cpu.yaml")
TINY = ["data.num_scenes=[2,1]", "data.room={room_size: [2.0, 2.0, 1.5], num_objects: [2, 3], "
        "size_range: [0.3, 0.6], spacing: 0.1, background_spacing: 0.25}", "seg3d.pad_multiple=256",
        "seg3d.prepare_epochs=1", "seg3d.max_proposals=8", "seg3d.max_points=32", "train.val_interval=1"]


def _task(out, epochs, *extra):
    cfg = load_config(CFG, TINY + [f"train.output_dir={out}", f"train.epochs={epochs}"] + list(extra))
    return get_task("instance_seg3d")(cfg).build()


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mg")
    full = _task(root / "full", 2)
    full_record = full.fit()
    part = _task(root / "part", 1)
    part.fit()
    resumed = _task(root / "part", 2)
    resumed_record = resumed.fit("auto")
    return full, full_record, resumed, resumed_record, root


def test_short_training_runs_with_proposals_and_reports_ap(runs):
    full, record, _, _, root = runs
    assert record["epoch"] == 1 and np.isfinite(record["train_loss"])
    assert "proposals" in record              # mean proposals per step (grouping ran from epoch 2)
    for key in ("val_ap", "val_ap50", "val_ap25"):
        assert 0.0 <= record[key] <= 1.0
    assert record["val_ap"] <= record["val_ap50"] <= record["val_ap25"]
    assert os.path.isfile(root / "full" / "best.ckpt") and os.path.isfile(root / "full" / "last.ckpt")


def test_resume_repeats_the_uninterrupted_run_exactly(runs):
    full, record, resumed, resumed_record, _ = runs
    a, b = _weights(full.net), _weights(resumed.net)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert resumed_record["train_loss"] == record["train_loss"]


def test_infer_writes_png_and_ply(runs, tmp_path):
    cfg = load_config(CFG, TINY + [f"train.output_dir={tmp_path}"])
    task = get_task("instance_seg3d")(cfg).load_for_inference(str(runs[4] / "full" / "last.ckpt"))
    for name, value in _weights(runs[0].net).items():
        np.testing.assert_array_equal(task.net.parameters_dict()[name].asnumpy(), value, err_msg=name)
    task.out_dir = str(tmp_path)
    res = task.infer_files(["room:7", str(tmp_path / "missing.npz")])
    assert "error" in res[1] and "missing.npz" in res[1]["error"]
    png, ply = res[0]["png"], res[0]["ply"]
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    lines = open(ply).read().splitlines()
    n = int(lines[2].split()[-1])
    assert lines[0] == "ply" and len(lines) == lines.index("end_header") + 1 + n


def test_dataset_errors_name_file_and_field(tmp_path):
    cfg = load_config(None, ["data.dataset=scannetv2", f"data.root={tmp_path}"], "instance_seg3d")
    with pytest.raises(DatasetError, match="train"):
        create_dataset(cfg.data, "train")
    for a in (1, 2, 3, 4, 5, 6):
        os.makedirs(tmp_path / f"Area_{a}")
        np.savez(tmp_path / f"Area_{a}" / "office_1.npz", coords=np.zeros((5, 3), np.float32),
                 colors=np.zeros((5, 3), np.float32), semantic_labels=np.full(5, 4), instance_labels=np.arange(5))
    np.savez(tmp_path / "Area_5" / "office_2.npz", coords=np.zeros((5, 3), np.float32),
             colors=np.zeros((4, 3), np.float32), semantic_labels=np.zeros(5, int), instance_labels=np.zeros(5, int))
    cfg = load_config(None, ["data.dataset=s3dis", f"data.root={tmp_path}", "data.test_area=5"], "instance_seg3d")
    train, val = create_dataset(cfg.data, "train"), create_dataset(cfg.data, "val")
    assert len(train) == 5 and len(val) == 2 and train[0]["semantic"].shape == (5,)
    with pytest.raises(DatasetError, match=r"office_2\.npz: field 'colors'"):
        val[1]


def test_demo_table_hpg_beats_single_radius_under_offset_noise():
    # Calibrated on seed 0, 6 rooms, N(0, 12 cm) offset noise: HPG 0.89 vs single radius 0.56 AP50.
    t = grouping_table(num_scenes=6, noise=0.12, seed=0)
    assert t["oracle_ap50"] >= 0.9
    assert t["noisy_ap50_hpg"] - t["noisy_ap50_single_radius"] >= 0.15


def test_demo_learned_pipeline_reaches_reported_ap50(tmp_path):
    # The quick demo: the config's rooms shortened to 24 training scenes, 7 warm-up epochs without
    # proposals, 12 in all (~2 min on 2 cores). Measured AP50 0.56 on the 6 validation rooms with
    # seed 0 (the full config, 40 scenes and 30 epochs, reaches 0.89).
    from mindcv_ext.tasks.demos import get_demo
    out = get_demo("maskgroup")(str(tmp_path), True)
    assert out["ap50"] >= 0.4
    assert out["ap25"] >= out["ap50"] >= out["ap"]
    assert out["noisy_ap50_hpg"] > out["noisy_ap50_single_radius"]
    assert os.path.isfile(tmp_path / "maskgroup_val0_instances.png")
    assert os.path.isfile(tmp_path / "maskgroup_val0_pred.ply")
