"""Every converter with hostile names from its data files (`../../X`, absolute paths, NUL, slashes):
nothing is written or read outside the folders named on the command line; the record is skipped
with a reason naming it, or the command fails with a clear message (docs/security.md)."""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as fx  # noqa: E402

from vlmem.cli import main  # noqa: E402
from vlmem.data.writer import DatasetWriter  # noqa: E402
from vlmem.safepaths import UnsafePathError, safe_child, safe_name  # noqa: E402

HOSTILE = ["../../../escaped", "/tmp/vlmem-abs-escape", "a\x00b", "sub/dir", "..", ""]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _assert_contained(tmp_path: Path, before: set[Path], out: Path) -> None:
    new = _files(tmp_path) - before
    assert new, "the converter wrote nothing at all"
    outside = [p for p in new if out.resolve() not in p.resolve().parents]
    assert not outside, f"written outside --out: {outside}"
    assert not Path("/tmp/vlmem-abs-escape.mp4").exists()


@pytest.mark.parametrize("bad", HOSTILE[:4])
def test_safe_name_and_safe_child_refuse(bad, tmp_path):
    with pytest.raises(UnsafePathError, match="record 7"):
        safe_name(bad, "record 7")
    if bad != "sub/dir":
        with pytest.raises(UnsafePathError, match="record 7"):
            safe_child(tmp_path, bad, "record 7")
    assert safe_child(tmp_path, "scannet/scene0000_00.mp4", "r") == tmp_path / "scannet/scene0000_00.mp4"


def test_vlm3r_hostile_scene_names_and_video_paths(tmp_path, capsys):
    path, videos = fx.make_vlm3r(tmp_path)
    secret = tmp_path / "secret.mp4"  # a real video outside --videos that a record tries to pull in
    fx.write_tiny_mp4(secret)
    good = json.loads(path.read_text())[0]
    records = [good]
    for i, bad in enumerate(HOSTILE):
        records.append({**good, "id": f"bad_scene_{i}", "scene_name": bad})
    records.append({**good, "id": "bad_source", "data_source": "../..", "video": None})
    records.append({**good, "id": "bad_video", "video": "../secret.mp4", "scene_name": "stolen"})
    records.append({**good, "id": "abs_video", "video": str(secret), "scene_name": "stolen2"})
    path.write_text(json.dumps(records))
    out = tmp_path / "deep" / "out"
    before = _files(tmp_path)
    assert main(["prepare-data", "vlm3r", "--json", str(path), "--videos", str(videos), "--out", str(out)]) == 0
    _assert_contained(tmp_path, before, out)
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["scene0000_00.mp4"]
    manifest = json.loads((out / "manifest.json").read_text())
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert "'../../../escaped' contains '..'" in reasons["record bad_scene_0"]
    assert "absolute path" in reasons["record bad_scene_1"] and "NUL" in reasons["record bad_scene_2"]
    assert "path separator" in reasons["record bad_scene_3"]
    assert "field 'data_source'" in reasons["record bad_source"]
    assert "field 'video'" in reasons["record bad_video"] and "absolute" in reasons["record abs_video"]
    assert "skipped 9" in capsys.readouterr().out
    # only hostile records: exit 1, the message names the records, nothing written anywhere
    path.write_text(json.dumps(records[1:3]))
    before = _files(tmp_path)
    assert main(["prepare-data", "vlm3r", "--json", str(path), "--videos", str(videos), "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert "nothing usable" in err and "record bad_scene_0" in err and "contains '..'" in err
    assert _files(tmp_path) == before


def test_vsibench_hostile_dataset_and_scene_names(tmp_path, capsys):
    parquet, videos = fx.make_vsibench(tmp_path)
    fx.write_tiny_mp4(tmp_path / "escaped.mp4")  # what `scannet/../../escaped` would pick up
    rows = pq.read_table(parquet).to_pylist()
    rows.append({**rows[1], "id": 10, "scene_name": "../../escaped"})
    rows.append({**rows[1], "id": 11, "dataset": "..", "scene_name": "escaped"})
    rows.append({**rows[1], "id": 12, "scene_name": "/tmp/vlmem-abs-escape"})
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(parquet)), parquet)
    out = tmp_path / "out"
    before = _files(tmp_path)
    assert main(["prepare-data", "vsibench", "--parquet", str(parquet), "--videos", str(videos), "--out", str(out)]) == 0
    _assert_contained(tmp_path, before, out)
    reasons = {s["item"]: s["reason"] for s in json.loads((out / "manifest.json").read_text())["skipped"]}
    assert "'../../escaped' contains '..'" in reasons["question 10"]
    assert "field 'dataset'" in reasons["question 11"] and "absolute" in reasons["question 12"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["41069025.mp4", "scene0011_00.mp4"]


def test_vsibench_meta_hostile_scene_names(tmp_path):
    meta_dir = Path(__file__).parent / "vsibench-meta"
    data = json.loads((meta_dir / "scannet_meta_info_val.json").read_text())
    name, entry = next(iter(data.items()))
    hostile = {name: entry, "../../escaped": entry, "/tmp/vlmem-abs-escape": entry, "x/y": {**entry, "dataset": "../.."}}
    meta = tmp_path / "scannet_meta_info_val.json"
    meta.write_text(json.dumps(hostile))
    videos = tmp_path / "videos"
    fx.write_tiny_mp4(videos / f"{name}.mp4")
    fx.write_tiny_mp4(tmp_path / "escaped.mp4")
    out = tmp_path / "out"
    before = _files(tmp_path)
    assert main(["prepare-data", "vsibench-meta", "--meta", str(meta), "--videos", str(videos), "--out", str(out)]) == 0
    _assert_contained(tmp_path, before, out)
    reasons = {s["item"]: s["reason"] for s in json.loads((out / "manifest.json").read_text())["skipped"]}
    assert "contains '..'" in reasons["scannet_meta_info_val.json:../../escaped"]
    assert "absolute" in reasons["scannet_meta_info_val.json:/tmp/vlmem-abs-escape"]
    assert "path separator" in reasons["scannet_meta_info_val.json:x/y"]
    assert sorted(p.name for p in (out / "scenes").iterdir()) == [f"{name}.json"]


def test_pixmo_hostile_urls_and_hashes_stay_inside(tmp_path):
    f = fx.make_pixmo(tmp_path)
    rows = pq.read_table(f["ama"]).to_pylist()
    rows.append({**rows[0], "image_url": "https://x/../../../escaped.png", "image_sha256": "../../escaped"})
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(f["ama"])), f["ama"])
    out = tmp_path / "out"
    before = _files(tmp_path)
    assert main(["prepare-data", "pixmo", "--parquet", str(f["ama"]), "--images", str(f["images"]),
                 "--out", str(out)]) == 0
    _assert_contained(tmp_path, before, out)


@pytest.mark.parametrize("bad", HOSTILE)
def test_writer_refuses_hostile_names_for_every_converter(bad, tmp_path):
    """scannet / arkitscenes / synthetic name scenes after folder names or generate them; the
    writer they all share refuses a hostile name anyway (defence in depth)."""
    from vlmem.data.scene import Scene

    out = tmp_path / "out"
    with DatasetWriter(out, "test") as w:
        with pytest.raises(UnsafePathError):
            w.video_relpath(bad)
        with pytest.raises(UnsafePathError):
            w.write_geometry(bad, {"pose": np.eye(4, dtype=np.float32)[None]})
        scene = Scene(name=bad, dataset="test", objects=[], room_size=1.0, room_center=np.zeros(3))
        with pytest.raises(UnsafePathError):
            w.write_scene(scene)
        if bad:
            with pytest.raises(UnsafePathError):
                w.path(f"videos/{bad}/../../../../x")
    assert not (tmp_path / "escaped").exists() and not out.exists()
