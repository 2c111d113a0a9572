import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as fx  # noqa: E402

from vlmem.data.pixmo import CAPTION_TEMPLATES, prepare_pixmo  # noqa: E402
from vlmem.errors import DataError, UsageError  # noqa: E402


def test_pixmo_cap(tmp_path):
    px = fx.make_pixmo(tmp_path)
    out = tmp_path / "cap"
    manifest = prepare_pixmo(px["cap"], px["images"], out, seed=3)
    (row,) = pq.read_table(out / "qa.parquet").to_pylist()
    assert row["question"] in CAPTION_TEMPLATES and row["ground_truth"] == "A grey cat on a sofa."
    assert row["answer_kind"] == "open" and row["question_type"] == "caption" and row["dataset"] == "pixmo-cap"
    assert row["video"] == f"images/{px['sha'][0]}.png" and (out / row["video"]).is_file()
    assert sorted(manifest["missing_images"]) == ["https://example.org/b/dog.jpg", "https://example.org/c/missing.png"]
    again = prepare_pixmo(px["cap"], px["images"], tmp_path / "cap2", seed=3)
    assert pq.read_table(tmp_path / "cap2" / "qa.parquet").to_pylist() == [row] and again["counts"] == manifest["counts"]


def test_pixmo_ask_model_anything(tmp_path):
    px = fx.make_pixmo(tmp_path)
    out = tmp_path / "ama"
    manifest = prepare_pixmo(px["ama"], px["images"], out)
    rows = pq.read_table(out / "qa.parquet").to_pylist()
    assert [r["ground_truth"] for r in rows] == ["Grey.", "A dog."]  # by URL name, then by sha256 name
    assert all(r["question_type"] == "open_qa" and r["answer_kind"] == "open" for r in rows)
    assert rows[1]["video"] == f"images/{px['sha'][1]}"
    (skip,) = manifest["skipped"]
    assert "broken.png" in skip["reason"] and "does not match image_sha256" in skip["reason"]


def test_pixmo_errors(tmp_path):
    px = fx.make_pixmo(tmp_path)
    with pytest.raises(UsageError):
        prepare_pixmo(tmp_path / "none.parquet", px["images"], tmp_path / "o")
    with pytest.raises(UsageError):
        prepare_pixmo(px["cap"], tmp_path / "noimg", tmp_path / "o")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="image missing"):
        prepare_pixmo(px["cap"], empty, tmp_path / "o")
