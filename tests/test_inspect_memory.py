"""`vlmem inspect-memory`: the per-frame trace against hand-computed slot contents, the
plots and atomic outputs, and the command end to end on a tiny trained run."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from vlmem.errors import UsageError
from vlmem.inspect import trace_memory, write_outputs, write_plots
from vlmem.memory import DualMemory, LarimarMemory, NoMemory, TitansMemory

T, N, D = 6, 3, 8


def _tokens(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, T, N, D, generator=g)  # distinct frames


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0))


@pytest.mark.parametrize("stores", ["input", "fused"])
def test_dual_trace_fifo_fill_and_most_similar_replacement(stores):
    torch.manual_seed(0)
    mem = DualMemory(D, num_heads=2, L_w=2, L_e=3, dropout=0.0, episodic_stores=stores).eval()
    h = _tokens()
    with torch.no_grad():
        outs, _, infos = mem.scan(h, return_info=True)
    stored = h[0] if stores == "input" else outs[0]  # the vector each frame writes to the episodic memory
    trace = trace_memory(mem, h, frame_indices=[10 * t for t in range(T)])
    frames = trace["frames"]
    assert trace["memory"] == "dual" and trace["capacity"] == {"working": 2, "episodic": 3}
    assert trace["num_frames"] == len(frames) == T and trace["tokens_per_frame"] == N
    json.dumps(trace)  # plain JSON types only

    for t, e in enumerate(frames):
        assert e["t"] == t and e["video_frame"] == 10 * t
        # working memory: FIFO of the last 2 frames; fill counts 1..L
        assert sorted(s for s in e["working"] if s >= 0) == list(range(max(0, t - 1), t + 1))
        assert e["fill"] == {"working": min(t + 1, 2), "episodic": min(t + 1, 3)}
        # what frame t read is what frame t-1 left; attention sums to 1 over filled slots
        prev = frames[t - 1] if t else {"working": [-1, -1], "episodic": [-1, -1, -1]}
        assert e["read"] == {"working": prev["working"], "episodic": prev["episodic"]}
        for name in ("working", "episodic"):
            mass = e["attention"][name]
            assert sum(mass) == pytest.approx(1.0 if t else 0.0, abs=1e-5)
            assert all(m == 0 for m, s in zip(mass, e["read"][name], strict=True) if s < 0)
        assert e["gate"]["mean"] == pytest.approx(float(infos["gate_mean"][0, t]), abs=1e-6)
        assert e["gate"]["std"] == pytest.approx(float(infos["gate_std"][0, t]), abs=1e-6)

    # episodic: appends until full -> frames 0, 1, 2 after 3 frames
    for t in range(3):
        assert frames[t]["episodic_write"] == {"slot": t, "replaced": False, "replaced_frame": None,
                                               "similarity": None}
    assert frames[2]["episodic"] == [0, 1, 2]
    # then each frame replaces the most cosine-similar stored entry (computed here by hand)
    held = [0, 1, 2]
    for t in range(3, T):
        sims = [_cos(stored[t], stored[src]) for src in held]
        best = max(range(3), key=lambda j: sims[j])
        w = frames[t]["episodic_write"]
        assert w["slot"] == best and w["replaced"] is True
        assert w["replaced_frame"] == held[best]
        assert w["similarity"] == pytest.approx(sims[best], abs=1e-5)
        held[best] = t
        assert frames[t]["episodic"] == held
    s = trace["summary"]
    assert s["fill_rate"] == {"working": 1.0, "episodic": 1.0}
    assert s["episodic_writes"] == T and s["episodic_replacements"] == T - 3


def test_trace_checks_its_input():
    mem = DualMemory(D, num_heads=2, L_w=2, L_e=3, dropout=0.0)
    with pytest.raises(UsageError):
        trace_memory(mem, torch.zeros(2, T, N, D))  # one video at a time
    with pytest.raises(UsageError):
        trace_memory(mem, _tokens(), frame_indices=[0, 1])


def test_titans_larimar_none_traces_and_plots(tmp_path):
    torch.manual_seed(0)
    h = _tokens(1)
    titans = trace_memory(TitansMemory(D, num_heads=2, update="titans").eval(), h)
    assert titans["memory"] == "titans" and titans["capacity"] == {}
    for e in titans["frames"]:
        assert {"s_norm", "write_gate_mean", "surprise_norm", "forget_mean", "momentum_mean"} <= set(e["stats"])
        assert 0 < e["stats"]["write_gate_mean"] < 1 and e["stats"]["s_norm"] > 0

    larimar = trace_memory(LarimarMemory(D, slots=4).eval(), h)
    assert larimar["capacity"] == {"slots": 4}
    for e in larimar["frames"]:
        assert {"kl", "utilisation", "read_error"} <= set(e["stats"])
        assert len(e["slot_usage"]) == 4 and sum(e["slot_usage"]) == pytest.approx(1.0, abs=1e-5)
        assert 0 < e["stats"]["utilisation"] <= 1

    none = trace_memory(NoMemory(D), h)
    assert none["memory"] == "none" and [e["fill"] for e in none["frames"]] == [{"memory": 0}] * T
    assert all(set(e) == {"t", "video_frame", "fill"} for e in none["frames"])

    for name, trace, expected in (("titans", titans, {"curves.png"}),
                                  ("larimar", larimar, {"curves.png", "slot_usage.png"}), ("none", none, set())):
        (tmp_path / name).mkdir()
        written = write_plots(trace, None, tmp_path / name)
        assert {p.name for p in written} == expected
        assert all(p.stat().st_size > 1000 for p in written)


def test_write_outputs_is_atomic_and_only_replaces_its_own_folder(tmp_path):
    torch.manual_seed(0)
    trace = trace_memory(DualMemory(D, num_heads=2, L_w=2, L_e=3, dropout=0.0).eval(), _tokens())
    images = torch.randint(0, 255, (T, 3, 8, 8), dtype=torch.uint8)
    out = tmp_path / "inspect" / "scene"
    files = write_outputs(trace, images, out)
    names = {"trace.json", "occupancy.png", "attention.png", "gate.png", "slots_final.png"}
    assert {p.name for p in files} == names == {p.name for p in out.iterdir()}
    (out / "stale.txt").write_text("from a previous run")
    write_outputs(trace, images, out)  # a re-run replaces the previous output as a whole
    assert {p.name for p in out.iterdir()} == names
    assert [p.name for p in out.parent.iterdir()] == ["scene"]  # no temp folders left behind
    assert json.loads((out / "trace.json").read_text())["num_frames"] == T
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="not an inspect-memory output"):
        write_outputs(trace, images, foreign)
    assert (foreign / "notes.txt").read_text() == "keep"


# -- end to end: prepare-data, train one step, inspect -----------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from vlmem.cli import main

    root = tmp_path_factory.mktemp("inspect")
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "4", "--frames", "8",
                     "--size", "32"]) == 0
        sets = ["data.frames=6", "model.vision.image_size=32", "model.pool=1", "train.batch_size=2", "model.memory.kind=dual", "data.question_types=[]",
                "train.max_steps=1", "run.name=insp"]
        assert main(["train", "tiny/base", *[a for s in sets for a in ("--set", s)]]) == 0
        yield root
    finally:
        os.chdir(old)


def test_inspect_memory_command_end_to_end(tiny_run, capsys):
    from vlmem.cli import main
    from vlmem.runs import load_run_recipe

    rows = pq.read_table("data/synth/qa.parquet").to_pylist()
    scene = next(r["scene_name"] for r in rows if r["split"] == "eval")
    assert main(["inspect-memory", "--run", "runs/insp", "--video", scene]) == 0
    out = tiny_run / "runs/insp/inspect" / scene
    assert {"trace.json", "occupancy.png", "attention.png", "gate.png", "slots_final.png"} == \
        {p.name for p in out.iterdir()}
    recipe = load_run_recipe(tiny_run / "runs/insp")
    trace = json.loads((out / "trace.json").read_text())
    expected = recipe.eval.frames or recipe.data.frames
    assert len(trace["frames"]) == trace["num_frames"] == len(trace["frame_indices"]) == expected
    assert trace["scene"] == scene and trace["video"] == f"videos/{scene}.mp4" and trace["run"] == "runs/insp"
    assert trace["memory"] == "dual"
    assert [e["fill"]["working"] for e in trace["frames"]][:3] == [1, 2, 3]
    assert "dual memory, frame by frame" in capsys.readouterr().out

    # --frames and --out
    assert main(["inspect-memory", "--run", "runs/insp", "--video", scene, "--frames", "3", "--out", "insp3"]) == 0
    assert json.loads((tiny_run / "insp3/trace.json").read_text())["num_frames"] == 3

    # an unknown scene is a usage error naming valid ones
    capsys.readouterr()
    assert main(["inspect-memory", "--run", "runs/insp", "--video", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and scene in err and "Traceback" not in err
