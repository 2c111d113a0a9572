import pytest
import torch
from safetensors.torch import save_file

from vlmem.errors import DataError
from vlmem.geometry import (
    SensorGeometryEncoder,
    find_cached_geometry,
    load_cached_geometry,
    resample_patch_tokens,
    select_frames,
    uniform_frame_indices,
)


class NotATensor:
    """A plain Python object: needs full unpickling, which vlmem refuses."""

    def __init__(self):
        self.value = 1


def _feats(frames=3, patches=9, width=8):
    return {"camera_tokens": torch.randn(frames, 1, width), "patch_tokens": torch.randn(frames, patches, width)}


def test_load_pt_written_with_torch_save(tmp_path):
    feats = _feats()
    path = tmp_path / "scene0000_00.pt"
    torch.save({**feats, "meta_frames": torch.arange(3)}, path)
    out = load_cached_geometry(path, expected_frames=3)
    assert set(out) == {"camera_tokens", "patch_tokens"}
    assert torch.equal(out["patch_tokens"], feats["patch_tokens"])
    assert find_cached_geometry(tmp_path, "scene0000_00") == path


def test_load_safetensors_same_keys(tmp_path):
    feats = {k: v.half() for k, v in _feats().items()}
    path = tmp_path / "s.safetensors"
    save_file(feats, str(path))
    out = load_cached_geometry(path)
    assert out["camera_tokens"].shape == (3, 1, 8) and out["camera_tokens"].dtype == torch.float16


def test_pt_with_python_object_is_rejected(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({**_feats(), "extra": NotATensor()}, path)
    with pytest.raises(DataError, match="weights_only"):
        load_cached_geometry(path)


def test_wrong_shape_names_file_and_key(tmp_path):
    feats = _feats()
    feats["patch_tokens"] = torch.randn(3, 9)
    path = tmp_path / "bad.pt"
    torch.save(feats, path)
    with pytest.raises(DataError, match=r"bad\.pt.*'patch_tokens'"):
        load_cached_geometry(path)


def test_missing_key_and_frame_mismatch(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"patch_tokens": torch.randn(2, 4, 8)}, path)
    with pytest.raises(DataError, match="'camera_tokens'"):
        load_cached_geometry(path)
    torch.save(_feats(frames=2), path)
    with pytest.raises(DataError, match="frames"):
        load_cached_geometry(path, expected_frames=5)
    with pytest.raises(DataError):
        find_cached_geometry(tmp_path, "nope")


def test_resample_patch_tokens():
    tokens = torch.arange(2 * 9 * 1, dtype=torch.float32).reshape(2, 9, 1).repeat(1, 1, 4)
    assert resample_patch_tokens(tokens, (3, 3), (3, 3)) is tokens
    out = resample_patch_tokens(tokens, None, (2, 4))
    assert out.shape == (2, 8, 4)
    const = torch.ones(1, 729, 3)
    assert torch.allclose(resample_patch_tokens(const, (27, 27), (24, 24)), torch.ones(1, 576, 3))


def test_uniform_frame_indices_and_select():
    assert uniform_frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_frame_indices(5, 5).tolist() == [0, 1, 2, 3, 4]
    feats = _feats(frames=10)
    sel = select_frames(feats, uniform_frame_indices(10, 4))
    assert sel["patch_tokens"].shape[0] == 4
    assert torch.equal(sel["camera_tokens"][1], feats["camera_tokens"][3])


def test_sensor_geometry_encoder_shapes_and_no_nan():
    enc = SensorGeometryEncoder(16, 12)
    coords = torch.randn(2, 6, 3) * 3
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1] = False
    coords[1] = float("nan")
    out = enc(coords, valid, torch.randn(2, 16))
    assert out["camera_tokens"].shape == (2, 1, 12) and out["patch_tokens"].shape == (2, 6, 12)
    assert all(torch.isfinite(v).all() for v in out.values())
