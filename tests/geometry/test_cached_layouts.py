"""VLM-3R's per-source cached features: `cached_dir` as a folder, a list, or a {data_source}/{scene_name}
template (with VLM-3R's `<split>/` subfolders), 3D points (`points` / `pts3d`) feeding position injection,
and the refusal (naming the key) when position injection has no points."""

from __future__ import annotations

import pytest
import torch

from vlmem.data.dataset import QADataset, SampleSpec
from vlmem.errors import DataError
from vlmem.geometry import cached_locations, find_cached_geometry, load_cached_geometry


def _save(path, frames=3, points=False, key="pts3d"):
    path.parent.mkdir(parents=True, exist_ok=True)
    feats = {"camera_tokens": torch.randn(frames, 1, 8).half(), "patch_tokens": torch.randn(frames, 4, 8).half()}
    if points:
        feats[key] = torch.randn(frames, 6, 6, 3).half()
        feats["conf"] = torch.ones(frames, 6, 6)
        feats["conf"][0, 0, 0] = 0.0
    torch.save(feats, path)
    return path


def test_per_source_template_list_and_split_subfolders(tmp_path):
    scannet = _save(tmp_path / "vlm_3r_data/scannet/spatial_features/scene0000_00.pt")
    arkit = _save(tmp_path / "vlm_3r_data/arkitscenes/spatial_features/Training/41069021.pt")  # <split>/ as VLM-3R
    template = str(tmp_path / "vlm_3r_data/{data_source}/spatial_features")
    assert find_cached_geometry(template, "scene0000_00", "scannet") == scannet
    assert find_cached_geometry(template, "41069021", "arkitscenes") == arkit
    folders = [str(tmp_path / "vlm_3r_data/scannet/spatial_features"),
               str(tmp_path / "vlm_3r_data/arkitscenes/spatial_features/Training")]
    assert find_cached_geometry(folders, "41069021") == arkit
    whole = str(tmp_path / "vlm_3r_data/{data_source}/spatial_features/{scene_name}.pt")
    assert cached_locations(whole, "scene0000_00", "scannet") == [scannet]
    with pytest.raises(DataError, match="scene0099_00.*--set model.geometry.cached_dir"):
        find_cached_geometry(template, "scene0099_00", "scannet")


def test_dataset_names_cannot_leave_the_named_folders(tmp_path):
    template = str(tmp_path / "{data_source}/spatial_features")
    for source in ("..", "../etc", "a/b"):
        with pytest.raises(DataError, match="one plain"):
            cached_locations(template, "scene0000_00", source)
    with pytest.raises(DataError, match="one plain"):
        cached_locations(str(tmp_path), "../scene")
    with pytest.raises(DataError, match="no dataset"):
        cached_locations(template, "scene0000_00", None)


def test_points_are_loaded_with_validity(tmp_path):
    out = load_cached_geometry(_save(tmp_path / "a.pt", points=True))
    assert out["points"].shape == (3, 6, 6, 3) and out["points"].dtype == torch.float32
    assert out["points_valid"].shape == (3, 6, 6) and not out["points_valid"][0, 0, 0] and out["points_valid"][1].all()
    out = load_cached_geometry(_save(tmp_path / "b.pt", points=True, key="points"))
    assert "points" in out
    torch.save({"camera_tokens": torch.randn(3, 1, 8), "patch_tokens": torch.randn(3, 4, 8),
                "pts3d": torch.randn(2, 6, 6, 3)}, tmp_path / "c.pt")
    with pytest.raises(DataError, match="'pts3d'.*expected \\[F=3"):
        load_cached_geometry(tmp_path / "c.pt")


def _dataset(tmp_path, needs_points):
    from tests.realworld.miniature import write_mp4

    write_mp4(tmp_path / "ds/videos/scene0000_00.mp4", frames=4)
    row = {"id": "1", "dataset": "scannet", "video": "videos/scene0000_00.mp4", "question": "q",
           "ground_truth": "1", "question_type": "object_counting", "answer_kind": "numeric", "options": None}
    spec = SampleSpec(frames=2, image_size=16, geometry="cached", needs_points=needs_points,
                      cached_dir=str(tmp_path / "feats/{data_source}/spatial_features"))
    return QADataset(tmp_path / "ds", [row], spec)


def test_position_injection_without_points_is_refused_at_validation(tmp_path):
    _save(tmp_path / "feats/scannet/spatial_features/scene0000_00.pt", points=False)
    with pytest.raises(DataError, match="no key 'points' \\(or 'pts3d'\\).*position_injection"):
        _dataset(tmp_path, needs_points=True).validate()
    ds = _dataset(tmp_path, needs_points=False)
    ds.validate()  # the same files serve a model without position injection
    assert set(ds.sample(0)["geometry"]) == {"camera_tokens", "patch_tokens"}


def test_points_reach_position_injection(tmp_path):
    _save(tmp_path / "feats/scannet/spatial_features/scene0000_00.pt", points=True)
    ds = _dataset(tmp_path, needs_points=True)
    ds.validate()
    geo = ds.sample(0)["geometry"]
    assert geo["points"].shape == (2, 6, 6, 3)

    from vlmem.model.vlm import MemoryVLM
    from vlmem.recipe.schema import ModelConfig

    class Tower(torch.nn.Module):
        hidden_size, grid = 8, (2, 2)

        def forward(self, x):
            return x.flatten(1).narrow(1, 0, 32).reshape(x.shape[0], 4, 8)

    class LM(torch.nn.Module):
        def get_input_embeddings(self):
            return torch.nn.Embedding(10, 8)

    cfg = ModelConfig.model_validate({"geometry": {"source": "cached", "cached_dir": "x", "dim": 8},
                                      "fusion": {"num_heads": 2, "viewpoint_alignment": False},
                                      "memory": {"kind": "none"}})
    torch.manual_seed(0)
    model = MemoryVLM(cfg, Tower(), LM()).eval()
    frames = torch.randint(0, 255, (1, 2, 3, 16, 16), dtype=torch.uint8)
    batch = {k: v.unsqueeze(0) for k, v in geo.items()}
    with torch.no_grad():
        with_points = model.encode_frames(frames, batch)
        moved = dict(batch, points=batch["points"] * 3 + 1)
        other_points = model.encode_frames(frames, moved)
    assert not torch.allclose(with_points, other_points)  # the coordinates reach the tokens
    with pytest.raises(Exception, match="no coordinates"):
        model.encode_frames(frames, {k: v for k, v in batch.items() if k in ("camera_tokens", "patch_tokens")})
