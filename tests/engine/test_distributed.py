"""Two msrun workers on CPU train data-parallel and end with the same weights."""
import os
import subprocess
import sys

import numpy as np
import pytest

from mindcv_ext.engine.checkpoint import read_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_two_workers_stay_in_sync(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, LOG_DIR=str(tmp_path / "logs"), MASTER_PORT=str(8200 + os.getpid() % 500),
               MINDCV_EXT_NO_SETUP="1",  # this process runs inside the installed environment already
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    cmd = ["bash", os.path.join(ROOT, "scripts", "run_distribute.sh"), os.path.join(ROOT, "configs/resnet/resnet20_digits.yaml"),
           "2", "--set", f"train.output_dir={out}", "--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=3",
           "--set", "data.max_samples=96", "--set", "data.image_size=16", "--set", "data.batch_size=8",
           "--set", "train.progress=false", "--set", "dist.save_rank_weights=true", "--set", "data.num_workers=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log")) if (tmp_path / "logs").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs[-3000:]
    assert "2 worker(s)" in logs
    rank0, rank1 = (read_checkpoint(str(out / f"rank_{r}.ckpt")) for r in (0, 1))
    trainable = [n for n in rank0 if not n.startswith(("moving_", )) and "moving_" not in n]
    assert trainable
    for name in trainable:
        np.testing.assert_array_equal(rank0[name].asnumpy(), rank1[name].asnumpy(), err_msg=name)
