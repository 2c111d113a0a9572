import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as fx  # noqa: E402

from vlmem.data.vsibench import prepare_vsibench  # noqa: E402
from vlmem.data.writer import QA_SCHEMA  # noqa: E402
from vlmem.errors import DataError, UsageError  # noqa: E402


def test_prepare_vsibench(tmp_path):
    parquet, videos = fx.make_vsibench(tmp_path)
    out = tmp_path / "out"
    manifest = prepare_vsibench(parquet, videos, out)
    table = pq.read_table(out / "qa.parquet")
    assert table.schema.equals(pa.schema([f for f in QA_SCHEMA if f.name != "pruned"]))  # no pruned column in this parquet
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["1", "2"]
    assert rows["1"]["answer_kind"] == "numeric" and rows["1"]["options"] is None and rows["1"]["ground_truth"] == "2"
    assert rows["2"]["answer_kind"] == "mc" and rows["2"]["options"][0] == "A. chair, table, door, tv"
    assert rows["2"]["ground_truth"] == "A" and rows["2"]["split"] == "eval"
    assert rows["2"]["video"] == "videos/scene0011_00.mp4" and rows["2"]["num_frames"] == 4
    assert (out / "videos" / "41069025.mp4").is_file() and (out / "videos" / "scene0011_00.mp4").is_file()
    assert len(manifest["missing_videos"]) == 1 and "scannetpp/missing_scene.mp4" in manifest["missing_videos"][0]
    assert any("video missing" in s["reason"] for s in manifest["skipped"])
    assert any(s["item"] == "question 3" for s in manifest["skipped"])


def test_vsibench_errors(tmp_path):
    parquet, videos = fx.make_vsibench(tmp_path)
    with pytest.raises(UsageError, match="--parquet"):
        prepare_vsibench(tmp_path / "nope.parquet", videos, tmp_path / "o1")
    with pytest.raises(UsageError, match="--videos"):
        prepare_vsibench(parquet, tmp_path / "novideos", tmp_path / "o2")
    empty = tmp_path / "empty_videos"
    empty.mkdir()
    with pytest.raises(DataError, match="video missing"):
        prepare_vsibench(parquet, empty, tmp_path / "o3")
    bad = tmp_path / "bad.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"id": [1], "question": ["q"]}), bad)
    with pytest.raises(DataError, match="ground_truth"):
        prepare_vsibench(bad, videos, tmp_path / "o4")
