from mindcv_ext.utils import layers_check


def test_imports_run_one_way():
    assert layers_check.violations() == []


def test_checker_sees_an_upward_import(tmp_path, monkeypatch):
    pkg = tmp_path / "mindcv_ext" / "models"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("from ..tasks import get_task\n")
    monkeypatch.setattr(layers_check, "ROOT", str(tmp_path))
    assert [v.split(": ", 1)[1] for v in layers_check.violations()] == [
        "mindcv_ext.models.bad (level 4) imports mindcv_ext.tasks (level 6)"]
