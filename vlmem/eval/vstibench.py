"""VSTI-Bench scoring with the VLM-3R lmms-eval semantics.

Reference: VLM-3R's `thinking-in-space/lmms_eval/tasks/vstibench/utils.py`. The upstream
repository `VITA-Group/VLM-3R` is not in the searchable index at that path; the file was
read from a verbatim copy of the VLM-3R tree in `Zhanpeng1202/SpatialReasoner` at commit
29ecec308f3377e87285afbe7fc38f92c43da993 (see docs/evaluation.md).

Same parsing and MRA as VSI-Bench (`vsibench.py`), except:
  * multiple-choice answers are compared with the record's ``mc_answer`` (the letter),
    not ``ground_truth`` (the answer text); records without ``mc_answer`` fall back to
    ``ground_truth`` with a warning;
  * no level combination: overall = plain mean over the (up to) 10 question types present,
    x100 (the reference returns ``overall * 100``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vlmem.eval.vsibench import BenchmarkSpec, score_records

OFFICIAL_SOURCE = (
    "VITA-Group/VLM-3R:thinking-in-space/lmms_eval/tasks/vstibench/utils.py "
    "(read from the copy Zhanpeng1202/SpatialReasoner@29ecec308f3377e87285afbe7fc38f92c43da993)"
)

MCA_QUESTION_TYPES = (
    "obj_obj_relative_pos_nf",
    "obj_obj_relative_pos_ud",
    "obj_obj_relative_pos_lr",
    "camera_obj_rel_dist_v1",
    "camera_obj_rel_dist_v2",
    "camera_obj_rel_dist_v3",
    "camera_movement_direction",
)
NA_QUESTION_TYPES = (
    "camera_obj_abs_dist",
    "camera_displacement",
    "camera_obj_dist_change",
)

VSTIBENCH = BenchmarkSpec(
    name="vstibench",
    mca_types=MCA_QUESTION_TYPES,
    na_types=NA_QUESTION_TYPES,
    tasks=MCA_QUESTION_TYPES + NA_QUESTION_TYPES,
    source=OFFICIAL_SOURCE,
    mc_target_field="mc_answer",
    combine_rel_direction=False,
)


def score_vstibench(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Score VSTI-Bench predictions; same output shape as `score_vsibench` (10 tasks)."""
    return score_records(VSTIBENCH, records)
