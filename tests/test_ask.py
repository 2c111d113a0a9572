"""`vlmem ask`: the streamed pass reads exactly what a whole-video forward pass reads (same memory
read-out, same answers, at any query frame and across chunk boundaries), with bounded context;
a model without memory samples data.frames uniformly and says so."""

import inspect

import numpy as np
import pytest
import torch

from vlmem.ask import (
    Question,
    Sampling,
    StreamReader,
    read_questions,
    sampling_for,
    stream_answers,
    to_model_frames,
)
from vlmem.data.dataset import build_prompt, tokenize
from vlmem.data.video import read_frames, write_video
from vlmem.errors import DataError
from vlmem.model.build import build_model, load_tokenizer
from vlmem.recipe import load_recipe

QUESTION = "How many chair(s) have you seen so far, in all the rooms of this walk?"


def _model(kind: str, context: int = 2):
    sets = [f"model.memory.kind={kind}", f"model.context_frames={context}", "data.frames=6",
            "model.vision.image_size=16", "model.vision.patch_size=8"]
    recipe = load_recipe("recipes/ablate/long_horizon.toml", sets)
    tok = load_tokenizer(recipe, texts=[QUESTION, "A. by the chair", "3 12"])
    model = build_model(recipe, tok).eval()
    return recipe, model, tok


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("ask") / "v.mp4"
    write_video(path, rng.integers(0, 255, (21, 16, 16, 3), dtype=np.uint8), fps=2.0)
    return path


@pytest.mark.parametrize("kind", ["dual", "surprise", "titans", "larimar"])
def test_stream_matches_whole_video_pass(kind, video):
    torch.manual_seed(0)
    recipe, model, tok = _model(kind)
    q_mid, q_end = Question(QUESTION, query_frame=17, id="mid"), Question(QUESTION, id="end")
    records, stats = stream_answers(model, tok, recipe, video, [q_end, q_mid], Sampling())
    assert stats["frames_read"] == 21 and stats["passes"] == 1
    frames = to_model_frames(read_frames(video, np.arange(21), backend="av"), 16)
    for rec, last in ((records[0], 20), (records[1], 17)):
        assert rec["query_frame"] == last
        ids = tokenize(tok, build_prompt(Question(QUESTION).row()), None)["input_ids"][None]
        with torch.no_grad():
            ref = model.generate(frames[:, :last + 1], ids, torch.ones_like(ids), max_new_tokens=16,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        assert rec["prediction"] == tok.decode(ref[0], skip_special_tokens=True).strip()
    # the read-out kept for the LM equals the whole-video scan's last frames (chunk boundary at 16)
    reader = StreamReader(model, 2)
    reader.push(np.arange(16), frames[:, :16])
    reader.push(np.arange(16, 21), frames[:, 16:])
    with torch.no_grad():
        tokens = model.encode_frames(frames)
        m, _, _ = model.run_memory(tokens)
    torch.testing.assert_close(torch.stack(list(reader.readout)), m[0, -2:], rtol=1e-4, atol=1e-5)
    assert len(reader.tokens) == 2  # bounded context, whatever the length


def test_no_memory_falls_back_to_uniform_sampling(video):
    recipe, model, tok = _model("none", context=0)
    sampling = sampling_for(recipe, video, fps=1.0)
    assert sampling.frames == 6 and "uniformly" in sampling.note and "no memory" in sampling.note
    records, stats = stream_answers(model, tok, recipe, video, [Question(QUESTION, query_frame=10),
                                                                Question(QUESTION)], sampling)
    assert stats["passes"] == 2 and stats["frames_read"] == 12  # data.frames per query time
    assert [r["query_frame"] for r in records] == [10, 20]


def test_fps_stride(video):
    recipe, model, tok = _model("dual")
    s = sampling_for(recipe, video, fps=1.0)  # the video is 2 fps
    assert s.stride == 2
    _, stats = stream_answers(model, tok, recipe, video, [Question(QUESTION)], s)
    assert stats["frames_read"] == 11


def test_questions_file_errors_name_line_and_field(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"question": "How many?"}\n{"question": "Which?", "options": "A"}\n')
    with pytest.raises(DataError, match=r"q.jsonl:2: field 'options'"):
        read_questions(p)
    p.write_text('{"question": "How many?", "query_frame": -1}\n')
    with pytest.raises(DataError, match="query_frame"):
        read_questions(p)
    p.write_text('{"question": "How many?", "query_frame": 4, "id": "x"}\n\n')
    assert read_questions(p) == [Question("How many?", None, 4, "x")]


def test_cli_usage_errors(capsys):
    from vlmem.cli import main

    assert main(["ask", "--video", "v.mp4", "q"]) == 2
    assert "--run" in capsys.readouterr().err


def test_models_that_cannot_stream_are_refused_before_reading():
    from vlmem.ask import check_model
    from vlmem.errors import UsageError

    recipe = load_recipe("recipes/ablate/long_horizon.toml", ["model.decoder.kind=plain", "model.vision.image_size=16",
                                                              "model.vision.patch_size=8"])
    tok = load_tokenizer(recipe, texts=[QUESTION])
    plain = build_model(recipe, tok)
    if "readout" in inspect.signature(plain.generate).parameters:  # generate(readout=) answers from the stream
        check_model(plain)
    else:
        with pytest.raises(UsageError, match="decoder"):
            check_model(plain)
    recipe = load_recipe("recipes/tiny/base.toml", ["model.vision.image_size=16", "model.vision.patch_size=8"])
    with pytest.raises(UsageError, match="geometry"):
        check_model(build_model(recipe, load_tokenizer(recipe, texts=[QUESTION])))
