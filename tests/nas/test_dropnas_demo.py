"""``mindcv-ext demo dropnas``: two searches from one seed (DropNAS and r = 0), the share picture, a
retrain of the DropNAS genotype, and the JSON line the issue asks for."""
import json
import os

import numpy as np

from mindcv_ext.models.darts import load_genotype
from mindcv_ext.tasks import nas_search


def test_demo_searches_both_from_one_seed_and_retrains(tmp_path, capsys, monkeypatch):
    tiny = ["train.epochs=2", "train.max_steps_per_epoch=2", "nas.channels=4", "data.batch_size=16",
            "nas.r_p=0.3"]  # a high rate so that the two-step search surely drops ops
    monkeypatch.setattr(nas_search, "QUICK_SEARCH", tiny)
    monkeypatch.setattr(nas_search, "QUICK_RETRAIN", ["train.epochs=1", "train.max_steps_per_epoch=2",
                                                      "model.kwargs.channels=4"])
    from mindcv_ext.cli import main
    main(["demo", "dropnas", "--quick", "--json", "--out", str(tmp_path)])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line) == {"param_share_dropnas", "param_share_darts", "genotype", "retrain_top1"}
    assert 0.0 < line["param_share_darts"] < 1.0 and 0.0 < line["param_share_dropnas"] < 1.0
    assert line["param_share_dropnas"] != line["param_share_darts"]
    assert 0.0 <= line["retrain_top1"] <= 1.0
    with open(tmp_path / "dropnas" / "genotype.json") as f:
        assert load_genotype(json.load(f)) == load_genotype(line["genotype"])
    assert open(tmp_path / "share_comparison.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # the same config and seed for both; r = 0 differs only in never dropping an op
    import mindspore as ms
    import yaml
    cfgs = {k: yaml.safe_load(open(tmp_path / k / "config.yaml")) for k in ("dropnas", "darts")}
    assert cfgs["dropnas"]["train"]["seed"] == cfgs["darts"]["train"]["seed"]
    assert cfgs["darts"]["nas"]["r_p"] == cfgs["darts"]["nas"]["r_np"] == 0.0
    for key in cfgs:
        assert len(json.load(open(tmp_path / key / "log.json"))) == 2
    ckpt = {k: ms.load_checkpoint(str(tmp_path / k / "last.ckpt")) for k in cfgs}
    alphas = sorted(n for n in ckpt["darts"] if n.startswith("alpha_"))
    assert alphas and all(n in ckpt["dropnas"] for n in alphas)
    assert any(not np.array_equal(ckpt["darts"][n].asnumpy(), ckpt["dropnas"][n].asnumpy()) for n in alphas)
    assert os.path.getsize(tmp_path / "retrain" / "last.ckpt") > 0
