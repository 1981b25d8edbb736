import json

import numpy as np
import pytest

import mindcv_ext
from mindcv_ext.cli import main
from mindcv_ext.export import export_and_verify


@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_export_round_trip(tmp_path, fmt):
    if fmt == "ONNX":
        pytest.importorskip("onnxruntime")
    net = mindcv_ext.create_model("resnet20", num_classes=10)
    report = export_and_verify(net, (2, 3, 16, 16), str(tmp_path / "r20"), fmt)
    assert report["verified"] and report["max_abs_err"] < 1e-4 and report["agreement"] == 1.0


def test_export_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="input_shape must be"):
        export_and_verify(mindcv_ext.create_model("resnet20"), (3, 0, 16), str(tmp_path / "x"))


def test_cli_train_eval_export_infer(tmp_path, capsys):
    import cv2
    out = tmp_path / "run"
    common = ["-c", "configs/resnet/resnet20_digits.yaml", "--set", f"train.output_dir={out}", "--set",
              "data.max_samples=64", "--set", "data.image_size=16", "--set", "train.epochs=1", "--set",
              "train.progress=false", "--set", "data.num_workers=1"]
    main(["train"] + common)
    capsys.readouterr()
    main(["eval"] + common + ["--ckpt", str(out / "best.ckpt"), "--json"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) == {"val_top1", "val_top5", "val_loss", "val_n"}
    logged = json.load(open(out / "log.json"))[-1]  # eval of best.ckpt reproduces the run's own validation
    assert metrics["val_top1"] == pytest.approx(logged["val_top1"]) and metrics["val_n"] == logged["val_n"]
    assert metrics["val_loss"] == pytest.approx(logged["val_loss"], rel=1e-5)
    main(["export"] + common + ["--ckpt", str(out / "best.ckpt"), "--out", str(tmp_path / "m")])
    assert "top-1 agreement 1.000" in capsys.readouterr().out
    img = tmp_path / "digit.png"
    cv2.imwrite(str(img), np.full((8, 8, 3), 128, np.uint8))
    main(["infer"] + common + ["--ckpt", str(out / "best.ckpt"), "--topk", "3", str(img)])
    assert capsys.readouterr().out.count("class") == 3


def test_cli_errors_exit_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["summary", "--model", "resnet2"])
    assert err.value.code == 2 and "resnet20" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: resnet20}\ntrain: {epoch: 3}\n")
    with pytest.raises(SystemExit):
        main(["train", "-c", str(bad)])
    assert "unknown key 'train.epoch'" in capsys.readouterr().err


def test_cli_summary_json(capsys):
    main(["summary", "--model", "resnet20", "--input-size", "32", "--num-classes", "10", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 272_474 and abs(info["macs"] - 41.0e6) / 41.0e6 < 0.02
