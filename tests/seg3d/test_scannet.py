import numpy as np
import pytest

from mindcv_ext.seg3d.scannet import ScanNetV2Scenes, SceneFileError, load_scene


def _write(path, n=50, **override):
    rng = np.random.default_rng(0)
    fields = {"coords": rng.normal(size=(n, 3)).astype(np.float32),
              "colors": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
              "semantic_labels": rng.integers(0, 20, n), "instance_labels": rng.integers(0, 4, n)}
    fields.update(override)
    np.savez(path, **{k: v for k, v in fields.items() if v is not None})
    return fields


def test_reader_round_trip(tmp_path):
    (tmp_path / "val").mkdir()
    written = [_write(tmp_path / "val" / f"scene{i:04d}_00.npz", n=30 + i) for i in range(3)]
    scenes = ScanNetV2Scenes(str(tmp_path), "val")
    assert len(scenes) == 3
    for got, ref in zip(scenes, written):
        np.testing.assert_array_equal(got["coords"], ref["coords"])
        np.testing.assert_array_equal(got["semantic"], ref["semantic_labels"])
        np.testing.assert_array_equal(got["instance"], ref["instance_labels"])
        assert got["colors"].dtype == np.float32 and got["instance"].dtype == np.int64


def test_test_split_without_labels(tmp_path):
    (tmp_path / "test").mkdir()
    _write(tmp_path / "test" / "a.npz", semantic_labels=None, instance_labels=None)
    scene = ScanNetV2Scenes(str(tmp_path), "test", with_labels=False)[0]
    assert set(scene) == {"coords", "colors"}
    with pytest.raises(SceneFileError, match=r"a\.npz: field 'semantic_labels' is missing"):
        load_scene(str(tmp_path / "test" / "a.npz"))


@pytest.mark.parametrize("override,message", [
    ({"colors": np.zeros((49, 3), np.float32)}, r"field 'colors' has shape \(49, 3\)"),
    ({"coords": np.zeros((50, 2), np.float32)}, r"field 'coords' has shape \(50, 2\)"),
    ({"coords": np.full((50, 3), np.nan, np.float32)}, r"field 'coords' contains NaN"),
    ({"instance_labels": np.full(50, 0.5)}, r"field 'instance_labels' .* integer"),
    ({"semantic_labels": np.full(50, 20)}, r"field 'semantic_labels' has values outside"),
    ({"instance_labels": np.full(50, -3)}, r"field 'instance_labels' has negative"),
])
def test_malformed_fields_name_file_and_field(tmp_path, override, message):
    path = tmp_path / "bad_scene.npz"
    _write(path, **override)
    with pytest.raises(SceneFileError, match="bad_scene.npz: " + message):
        load_scene(str(path))


def test_missing_and_unreadable_files(tmp_path):
    assert issubclass(SceneFileError, ValueError)
    with pytest.raises(SceneFileError, match="nope.npz: scene file does not exist"):
        load_scene(str(tmp_path / "nope.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(SceneFileError, match="junk.npz: not a readable .npz"):
        load_scene(str(tmp_path / "junk.npz"))
    with pytest.raises(SceneFileError, match="split folder does not exist"):
        ScanNetV2Scenes(str(tmp_path), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneFileError, match="no .npz scene files"):
        ScanNetV2Scenes(str(tmp_path), "empty")
