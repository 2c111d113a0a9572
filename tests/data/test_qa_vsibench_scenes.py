"""Question generation on all 288 real VSI-Bench scenes (tests/data/vsibench-meta)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from vlmem.data.qa import (
    ALL_FAMILIES,
    DEFAULT_MAX_PER_FAMILY,
    VSI_FAMILIES,
    box_distance,
    generate_questions,
    mc_answer_text,
)
from vlmem.data.vsibench_meta import load_vsibench_meta
from vlmem.data.writer import validate_row
from vlmem.errors import UsageError

META_DIR = Path(__file__).parent / "vsibench-meta"
META_FILES = sorted(META_DIR.glob("*_meta_info_val.json"))

COUNT_RE = re.compile(r"^How many (.+)\(s\) are in this room\?$")
SIZE_RE = re.compile(r"^What is the length of the longest dimension \(length, width, or height\) of the (.+), "
                     r"measured in centimeters\?$")
ABS_RE = re.compile(r"^Measuring from the closest point of each object, what is the direct distance between the "
                    r"(.+) and the (.+) \(in meters\)\?$")
REL_DIST_RE = re.compile(r"^Measuring from the closest point of each object, which of these objects "
                         r"\((.+), (.+), (.+), (.+)\) is the closest to the (.+)\?$")
DIR_RE = re.compile(r"^If I am standing by the (.+) and facing the (.+), is the (.+) to (?:my|the left or the right)")
ORDER_RE = re.compile(r"categories in the video: (.+), (.+), (.+), (.+)\?$")
N_OPTIONS = {"object_rel_distance": 4, "object_rel_direction_easy": 2, "object_rel_direction_medium": 3,
             "object_rel_direction_hard": 4, "obj_appearance_order": 4}


@pytest.fixture(scope="module")
def corpus():
    """[(scene, raw meta entry, rows)] for all 288 scenes."""
    out = []
    for path in META_FILES:
        raw = json.loads(path.read_text())
        scenes, skipped, _ = load_vsibench_meta(path)
        assert skipped == []
        for scene in scenes:
            out.append((scene, raw[scene.name], generate_questions(scene, seed=0)))
    assert len(out) == 288
    return out


def test_rows_valid_unique_ids_and_counts(corpus):
    ids = [r["id"] for _, _, rows in corpus for r in rows]
    assert len(ids) == len(set(ids))
    counts = Counter(r["question_type"] for _, _, rows in corpus for r in rows)
    for family in VSI_FAMILIES:
        if family != "obj_appearance_order":  # meta_info has no frame visibility
            assert counts[family] > 0, family
    assert counts["obj_appearance_order"] == 0
    assert counts["room_size_estimation"] == 288
    for scene, _, rows in corpus:
        per = Counter(r["question_type"] for r in rows)
        for family, n in per.items():
            assert n <= DEFAULT_MAX_PER_FAMILY[family]
        for r in rows:
            assert validate_row(r) is None, r
            assert r["scene_name"] == scene.name and r["dataset"] == scene.dataset
            assert r["dataset"] in ("scannet", "arkitscenes", "scannetpp")
            assert r["video"] == "" and r["split"] == "train"


def test_deterministic_and_seed_dependent(corpus):
    for scene, _, rows in corpus[::7]:
        assert generate_questions(scene, seed=0) == rows
    changed = sum(generate_questions(scene, seed=1) != rows for scene, _, rows in corpus[::7])
    assert changed > 0


def test_numeric_answers_match_annotation(corpus):
    for scene, raw, rows in corpus:
        groups = scene.by_category()
        for r in rows:
            qt, gt = r["question_type"], r["ground_truth"]
            if qt == "object_counting":
                cat = COUNT_RE.match(r["question"]).group(1)
                assert r["options"] is None and r["answer_kind"] == "numeric"
                assert int(gt) == len(groups[cat]) == raw["object_counts"][cat] > 1
                assert gt == str(int(gt))
            elif qt == "object_size_estimation":
                cat = SIZE_RE.match(r["question"]).group(1)
                assert raw["object_counts"][cat] == 1 and len(groups[cat]) == 1
                box = raw["object_bbox"][cat][0]
                assert gt == str(round(max(box["axesLengths"]) * 100))
            elif qt == "room_size_estimation":
                assert r["question"] == ("What is the size of this room (in square meters)? \nIf multiple rooms "
                                         "are shown, estimate the size of the combined space.")
                assert float(gt) == round(raw["room_size"], 1) and re.fullmatch(r"\d+\.\d", gt)
            elif qt == "object_abs_distance":
                a, b = ABS_RE.match(r["question"]).groups()
                assert raw["object_counts"][a] == raw["object_counts"][b] == 1
                assert re.fullmatch(r"\d+\.\d", gt) and float(gt) >= 0.2
                assert float(gt) == round(box_distance(groups[a][0], groups[b][0]), 1)


def test_multiple_choice_rows(corpus):
    for scene, raw, rows in corpus:
        groups = scene.by_category()
        excluded = set(scene.extras.get("exclude_categories", []))
        for r in rows:
            qt = r["question_type"]
            if qt not in N_OPTIONS:
                continue
            assert r["answer_kind"] == "mc" and len(r["options"]) == N_OPTIONS[qt]
            letters = [o.split(". ", 1)[0] for o in r["options"]]
            assert letters == list("ABCD"[: N_OPTIONS[qt]])
            assert r["ground_truth"] in letters
            answer = mc_answer_text(r)
            assert answer is not None
            if qt == "object_rel_distance":
                *choices, primary = REL_DIST_RE.match(r["question"]).groups()
                assert choices == [o.split(". ", 1)[1] for o in r["options"]]
                assert raw["object_counts"][primary] == 1 and primary not in excluded
                assert not excluded & set(choices)
                dists = {c: min(box_distance(x, y) for x in groups[c] for y in groups[primary]) for c in choices}
                assert answer == min(dists, key=dists.get)
            else:
                pos, ori, qry = DIR_RE.match(r["question"]).groups()
                for cat in (pos, ori, qry):
                    assert raw["object_counts"][cat] == 1 and len(groups[cat]) == 1
                expected = {"object_rel_direction_easy": {"left", "right"},
                            "object_rel_direction_medium": {"left", "right", "back"},
                            "object_rel_direction_hard": {"front-left", "front-right", "back-left", "back-right"}}[qt]
                assert {o.split(". ", 1)[1] for o in r["options"]} == expected


def test_correct_letter_spread(corpus):
    letters = Counter((r["question_type"], r["ground_truth"]) for _, _, rows in corpus for r in rows
                      if r["answer_kind"] == "mc")
    for qt, n in N_OPTIONS.items():
        total = sum(v for (t, _), v in letters.items() if t == qt)
        if total < 100:
            continue
        for letter in "ABCD"[:n]:
            assert letters[(qt, letter)] > total / n * 0.6, (qt, letter, letters)


def test_inconsistent_annotation_is_never_asked(corpus):
    by_name = {scene.name: (scene, rows) for scene, _, rows in corpus}
    scene, rows = by_name["scene0500_00"]
    assert set(scene.extras["exclude_categories"]) == {"chair", "window"}
    for r in rows:
        text = r["question"] + " " + " ".join(r["options"] or [])
        assert "chair" not in text and "window" not in text
    scene, _ = by_name["scene0378_01"]  # duplicated printer box dropped: counts agree again
    assert len(scene.by_category()["printer"]) == 1 and "exclude_categories" not in scene.extras


def test_family_selection_and_caps(corpus):
    scene = corpus[0][0]
    rows = generate_questions(scene, families=["object_counting", "room_size_estimation"], max_per_family=2)
    assert {r["question_type"] for r in rows} <= {"object_counting", "room_size_estimation"}
    assert sum(r["question_type"] == "object_counting" for r in rows) <= 2
    # a family's rows do not depend on which other families are requested
    alone = generate_questions(scene, families=["object_abs_distance"])
    together = [r for r in generate_questions(scene) if r["question_type"] == "object_abs_distance"]
    assert alone == together
    assert generate_questions(scene, max_per_family=0) == []
    with pytest.raises(UsageError, match="human annotators"):
        generate_questions(scene, families=["route_planning"])
    with pytest.raises(UsageError, match="unknown question family"):
        generate_questions(scene, families=["nope"])
    assert set(ALL_FAMILIES) >= set(VSI_FAMILIES)
