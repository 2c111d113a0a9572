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


def test_pixmo_splits_by_image_deterministically(tmp_path):
    import hashlib

    from vlmem.data.pixmo import pixmo_split

    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    splits = [pixmo_split(d, 0.1, 0.1) for d in digests]
    shares = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(shares["train"] - 0.8) < 0.03 and abs(shares["val"] - 0.1) < 0.02 and abs(shares["test"] - 0.1) < 0.02
    assert [pixmo_split(d, 0.1, 0.1) for d in digests] == splits  # a pure function of the image
    px = fx.make_pixmo(tmp_path)
    prepare_pixmo(px["ama"], px["images"], tmp_path / "a", val_fraction=0.0, test_fraction=0.5)
    rows = pq.read_table(tmp_path / "a" / "qa.parquet").to_pylist()
    assert [r["split"] for r in rows] == [pixmo_split(Path(r["video"]).stem, 0.0, 0.5) for r in rows]
    with pytest.raises(UsageError, match="val-fraction"):
        prepare_pixmo(px["ama"], px["images"], tmp_path / "b", val_fraction=0.6, test_fraction=0.5)
