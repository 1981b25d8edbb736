"""What a user can get wrong ends with one `error:` line naming the problem and exit code 2."""
import numpy as np
import pytest

from mindcv_ext.cli import main

CFG = ["-c", "configs/resnet/resnet20_digits.yaml"]


def run_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("override, words", [
    ("train.epochs=-1", "'train.epochs' is -1"), ("data.batch_size=0", "'data.batch_size' is 0"),
    ("optim.lr=-1", "'optim.lr' is -1"), ('optim.lr="0.1"', "'optim.lr' must be float"),
    ("model.kwargs={bogus: 1}", "bogus"), ("model.kwargs={drop_rat: 0.1}", "drop_rat"),
    ("model.name=resnet2", "resnet20"), ("task=clasification", "classification")])
def test_bad_config_values(capsys, override, words):
    assert words in run_error(capsys, ["train", *CFG, "--set", override])


def test_export_without_checkpoint_is_refused(capsys, tmp_path):
    assert "--ckpt" in run_error(capsys, ["export", *CFG, "--out", str(tmp_path / "m")])


def test_eval_of_another_models_checkpoint_is_refused(capsys, tmp_path):
    import mindcv_ext
    from mindcv_ext.utils.checkpoint import save_weights
    ckpt = str(tmp_path / "r32.ckpt")
    save_weights(mindcv_ext.create_model("resnet32", num_classes=10), ckpt)
    line = run_error(capsys, ["eval", *CFG, "--ckpt", ckpt])
    assert "does not fit the model" in line and "unexpected" in line


def test_infer_reports_bad_files_and_goes_on(capsys, tmp_path):
    import cv2
    import mindcv_ext
    from mindcv_ext.utils.checkpoint import save_weights
    ckpt = str(tmp_path / "r20.ckpt")
    save_weights(mindcv_ext.create_model("resnet20", num_classes=10), ckpt)
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((8, 8, 3), 100, np.uint8))
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", *CFG, "--ckpt", ckpt, "--topk", "2", str(tmp_path / "bad.png"), str(good)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.out.count("class") == 2 and "bad.png: error: cannot read image" in captured.err
    assert "1 of 2 file(s) could not be read" in captured.err
    assert "--topk must be at least 1" in run_error(capsys, ["infer", *CFG, "--ckpt", ckpt, "--topk", "-1", str(good)])


def test_quantize_is_the_adder_ptq_run(capsys, tmp_path):
    line = run_error(capsys, ["quantize", "-c", "configs/addernet/adder_resnet20_digits.yaml", "--ckpt",
                              str(tmp_path / "missing.ckpt"), "--bits", "4"])
    assert "missing.ckpt' does not exist" in line
    line = run_error(capsys, ["run", "-c", "configs/addernet/adder_resnet20_digits.yaml"])
    assert "quant.ckpt is not set" in line
    assert "above 8" in run_error(capsys, ["quantize", "-c", "configs/addernet/adder_resnet20_digits.yaml",
                                           "--ckpt", "x.ckpt", "--bits", "16"])
