"""tests/_shared.py: where shared/ is found, and fixtures fail in CI but skip elsewhere."""
import os

import pytest
from _pytest.outcomes import Failed, Skipped

import _shared


def test_env_var_wins_and_is_the_only_place(monkeypatch, tmp_path):
    (tmp_path / "fixtures" / "demo").mkdir(parents=True)
    (tmp_path / "fixtures" / "demo" / "a.npy").write_bytes(b"")
    monkeypatch.setenv("MINDCV_EXT_SHARED", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    assert _shared.shared_candidates() == [str(tmp_path)]
    assert _shared.require_fixture("demo", "a.npy") == str(tmp_path / "fixtures" / "demo")
    with pytest.raises(Skipped, match="b.npy"):
        _shared.require_fixture("demo", "a.npy", "b.npy")


def test_ci_layout_is_beside_the_clone(monkeypatch):
    monkeypatch.delenv("MINDCV_EXT_SHARED", raising=False)
    beside = os.path.normpath(os.path.join(_shared.REPO, "..", "shared"))
    assert _shared.shared_candidates()[0] == beside


@pytest.mark.parametrize("ci,outcome", [("1", Failed), ("true", Failed), ("", Skipped), ("0", Skipped)])
def test_missing_fixture_fails_only_in_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setenv("MINDCV_EXT_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="MINDCV_EXT_SHARED"):
        _shared.require_fixture("ghostnetv2_100_random", "logits.npy")
