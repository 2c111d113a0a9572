"""`prepare-data synthetic --stream-rooms`: rooms concatenated into one video, counting answers that
grow with the query time, a recall question whose answer is the true order of the places."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlmem.data.stream import RECALL_OBJECT, parse_rooms, prepare_stream, query_frames
from vlmem.data.video import iter_frames, video_num_frames
from vlmem.errors import UsageError


@pytest.fixture(scope="module")
def stream_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "data"
    prepare_stream(out, [4, 10], streams=2, eval_streams=1, frames=4, size=16, stops=4, seed=3)
    return out


def test_layout_and_lengths(stream_data):
    rows = pq.read_table(stream_data / "qa.parquet").to_pylist()
    by_scene = {}
    for r in rows:
        by_scene.setdefault(r["scene_name"], []).append(r)
    assert sorted(by_scene) == ["eval_k0004_0000", "eval_k0010_0000", "train_k0004_0000", "train_k0004_0001"]
    assert video_num_frames(stream_data / "videos/eval_k0010_0000.mp4") == 40
    train = [r for r in rows if r["split"] == "train"]
    assert {r["query_frame"] for r in train} == {15}  # train streams ask at the end only
    evals = [r for r in by_scene["eval_k0010_0000"] if r["question_type"] == "stream_counting"]
    assert {r["query_frame"] for r in evals} == set(query_frames(10, 4, (0.1, 0.5, 1.0))) == {3, 19, 39}


def test_counts_are_cumulative_and_match_the_scene(stream_data):
    scene = json.loads((stream_data / "scenes/eval_k0010_0000.json").read_text())
    rows = pq.read_table(stream_data / "qa.parquet").to_pylist()
    counts = {}
    for r in rows:
        if r["scene_name"] == "eval_k0010_0000" and r["question_type"] == "stream_counting":
            counts.setdefault(r["question"], {})[r["query_frame"]] = int(r["ground_truth"])
    assert counts
    for per_q in counts.values():
        values = [per_q[q] for q in sorted(per_q)]
        assert values == sorted(values)
    final = {q.split("(s)")[0].split()[-1]: c[39] for q, c in counts.items() if 39 in c}
    expected = {k: v for k, v in scene["object_counts"].items() if k != RECALL_OBJECT}
    assert final == expected


def test_recall_answer_is_the_true_order(stream_data):
    scene = json.loads((stream_data / "scenes/eval_k0010_0000.json").read_text())
    rows = [r for r in pq.read_table(stream_data / "qa.parquet").to_pylist()
            if r["scene_name"] == "eval_k0010_0000" and r["question_type"] == "stream_recall"]
    assert len(rows) == 1 and len(scene["recall_frames"]) == 4
    assert scene["recall_frames"] == sorted(scene["recall_frames"])
    r = rows[0]
    chosen = next(o for o in r["options"] if o.startswith(r["ground_truth"] + "."))
    assert chosen[3:] == ", ".join(f"by the {c}" for c in scene["recall_places"])
    assert len(set(r["options"])) == 4


def test_streamed_decode_matches_the_video(stream_data):
    from vlmem.data.video import read_frames

    path = stream_data / "videos/eval_k0004_0000.mp4"
    chunks = list(iter_frames(path, keep=lambda i: i % 3 == 0, chunk=2))
    idx = np.concatenate([i for i, _ in chunks])
    assert idx.tolist() == [0, 3, 6, 9, 12, 15] and max(len(i) for i, _ in chunks) == 2
    np.testing.assert_array_equal(np.concatenate([f for _, f in chunks]), read_frames(path, idx, backend="av"))


def test_bad_rooms_is_a_usage_error():
    with pytest.raises(UsageError, match="--stream-rooms"):
        parse_rooms("4,x")
    with pytest.raises(UsageError, match="--stream-rooms"):
        parse_rooms("0")
