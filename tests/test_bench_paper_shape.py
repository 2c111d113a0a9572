"""The paper-shape device check (tests/benchmarks/bench_paper_shape.py) keeps working: run at CPU size."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))
import bench_paper_shape  # noqa: E402


def test_paper_shape_check_runs_small(capsys, one_thread):
    assert bench_paper_shape.main(["--small", "--steps", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("phase ")]
    assert [x.split(":")[0] for x in lines] == ["phase 1", "phase 2", "phase 3"]
    for line in lines:
        step = float(re.search(r"step ([0-9.]+) s", line).group(1))
        share = re.search(r"memory module: ([0-9,]+) params \(([0-9.]+)%\)", line)
        loss = float(re.search(r"loss ([0-9.]+)", line).group(1))
        assert step > 0 and int(share.group(1).replace(",", "")) > 0 and 0 < float(share.group(2)) < 100
        assert loss == loss and "peak memory" in line
    # phase 3 adds LoRA on the LM: more trainable parameters than phase 1
    trainable = [int(re.search(r"trainable ([0-9,]+)", x).group(1).replace(",", "")) for x in lines]
    assert trainable[0] < trainable[1] < trainable[2]


def test_paper_shapes_are_the_papers():
    s = bench_paper_shape.shapes(bench_paper_shape.main.__globals__["argparse"].Namespace(small=False, lm="7b",
                                                                                            frames=32))
    assert s["vision"][0] == 1152 and s["vision"][3] // s["vision"][4] == 27  # SigLIP-so400m: 27x27 patches
    assert s["lm"][:2] == (3584, 28) and s["geo"][:2] == (768, 729) and s["frames"] == 32 and s["L"] == (8, 32)
