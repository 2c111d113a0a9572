"""A format-exact miniature of the real researcher's world, generated (nothing downloaded or copied).

Laid out under one folder `root` the way the shipped paper recipes name it (run the test with
`root` as the working directory):

* `data/vlm_3r_data/<source>/videos[/<split>]/<scene>.mp4` and the VLM-3R-DATA json written the way
  VITA-Group/VLM-3R `vlm_3r_data_process/src/format_qa.py` (commit 6dd1264) writes it: a JSON list of
  `{id: uuid4, data_source, scene_name, question_type, video, conversations: [human "<image>\\n" +
  vsibench_doc_to_text(qa), gpt answer]}` with VLM-3R's own question-type names (`object_rel_direction_v1`...).
* `data/vlm_3r_data/<source>/spatial_features[/<split>]/<scene>.pt`: `torch.save` of a dict of tensors as
  VLM-3R `scripts/extract_spatial_features.py` writes it (camera_tokens [F,1,C], patch_tokens [F,P,C], fp16),
  plus the CUT3R pointmaps `pts3d` [F,H,W,3] (first frame's coordinates) for position injection.
* `VSI-Bench/test.parquet` with the dataset card's columns (id int64, dataset, scene_name, question_type,
  question, options list<string>, ground_truth, pruned bool) and `VSI-Bench/<dataset>/<scene>.mp4`;
  `vsibench_features/<dataset>/<scene>.pt`: the extraction script run with --input-dir VSI-Bench
  (it mirrors the input folder).
* `ckpt/llava-onevision-tiny`: a LLaVA-OneVision checkpoint built from transformers' own
  `LlavaOnevisionConfig` / `LlavaOnevisionForConditionalGeneration` (SigLIP tower, Qwen2 LM, random
  init), a byte-level BPE tokenizer in Qwen2's format with its chat template, an image-processor
  config, all written with `save_pretrained`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import torch

VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
              patch_size=8)  # a 4x4 patch grid (SigLIP-so400m: 27x27 of width 1152)
TEXT = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            max_position_embeddings=1024, tie_word_embeddings=False)
GEO_DIM = 16  # CUT3R: 768
GEO_PATCHES = 16  # CUT3R: 729 = 27x27
FEATURE_FRAMES = 6  # extract_spatial_features.py --frames-upbound (its default is 10; VLM-3R trains with 32)
VIDEO_FRAMES = 8
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PRE = "These are frames of a video."
NA_POST = "Please answer the question using a single word or phrase."
MCA_POST = "Answer with the option's letter from the given choices directly."

# (data_source, split folder or "", scene): ScanNet has no split folder, ARKitScenes / ScanNet++ have one
TRAIN_SCENES = [("scannet", "", "scene0000_00"), ("scannet", "", "scene0001_00"),
                ("arkitscenes", "Training", "41069021"), ("scannetpp", "train", "0a5c013435")]
EVAL_SCENES = [("scannet", "scene0011_00"), ("arkitscenes", "41069025")]


def write_mp4(path: Path, frames: int = VIDEO_FRAMES, seed: int = 0, size: int = 24) -> None:
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=4)
        s.width, s.height, s.pix_fmt = size, size, "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def write_spatial_features(path: Path, seed: int, frames: int = FEATURE_FRAMES, points: bool = True) -> None:
    """What extract_spatial_features.py saves (+ `pts3d`): a dict of CPU tensors, fp16, via torch.save."""
    g = torch.Generator().manual_seed(seed)
    feats = {"camera_tokens": torch.randn(frames, 1, GEO_DIM, generator=g).half(),
             "patch_tokens": torch.randn(frames, GEO_PATCHES, GEO_DIM, generator=g).half()}
    if points:  # CUT3R's pts3d_in_other_view per frame, stacked: [F, H, W, 3] (432x432 at paper size)
        h = w = 8
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        depth = 2.0 + torch.rand(frames, h, w, generator=g)
        feats["pts3d"] = torch.stack([xs * depth, ys * depth, depth], dim=-1).half()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(feats, path)


def _vsibench_doc_to_text(qa: dict, mca: bool) -> str:
    """VLM-3R vlm_3r_data_process/src/utils/vsibench_utils.py::vsibench_doc_to_text (re-enacted)."""
    if not mca:
        return PRE + "\n" + qa["question"] + "\n" + NA_POST
    return "\n".join([PRE, qa["question"], "Options:\n" + "\n".join(qa["options"]), MCA_POST])


def _qa_items(source: str, scene: str, video: str) -> list[dict]:
    base = {"dataset": source, "scene_name": scene, "video_path": video}
    return [
        {**base, "question_type": "object_counting", "question": "How many chair(s) are in this room?",
         "ground_truth": "2", "mca": False},
        {**base, "question_type": "room_size_estimation",
         "question": "What is the size of this room (in square meters)?", "ground_truth": "21.5", "mca": False},
        {**base, "question_type": "object_rel_direction_v1",
         "question": "If I am standing by the sofa and facing the tv, is the door to my front-left, front-right, "
                     "back-left, or back-right?",
         "options": ["A. front-left", "B. front-right", "C. back-left", "D. back-right"], "mc_answer": "C",
         "mca": True},
        {**base, "question_type": "object_rel_direction_v3",
         "question": "If I am standing by the sofa and facing the tv, is the door to my left or right?",
         "options": ["A. left", "B. right"], "mc_answer": "A", "mca": True},
        {**base, "question_type": "object_rel_distance_v2",
         "question": "Which of these objects (chair, table, door) is the closest to the sofa?",
         "options": ["A. chair", "B. table", "C. door"], "mc_answer": "B", "mca": True},
    ]


def make_vlm3r_world(root: Path) -> Path:
    """Videos, features and the VLM-3R-DATA json under root/data/vlm_3r_data; returns the json path."""
    data = root / "data" / "vlm_3r_data"
    conversations = []
    for i, (source, split, scene) in enumerate(TRAIN_SCENES):
        sub = f"{split}/" if split else ""
        video = f"{source}/videos/{sub}{scene}.mp4"
        write_mp4(data / video, seed=i)
        write_spatial_features(data / source / "spatial_features" / sub / f"{scene}.pt", seed=i)
        for qa in _qa_items(source, scene, video):
            answer = qa["mc_answer"] if qa["mca"] else qa["ground_truth"]
            conversations.append({
                "id": str(uuid.UUID(int=len(conversations) + 1)), "data_source": source, "scene_name": scene,
                "question_type": qa["question_type"], "video": video,
                "conversations": [{"from": "human", "value": "<image>\n" + _vsibench_doc_to_text(qa, qa["mca"])},
                                  {"from": "gpt", "value": str(answer)}]})
    path = data / "vlm3r_train.json"
    path.write_text(json.dumps(conversations, indent=2), encoding="utf-8")
    return path


def make_vsibench_world(root: Path, points: bool = True) -> Path:
    """VSI-Bench/test.parquet + videos, and vsibench_features/ for those videos; returns the parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bench = root / "VSI-Bench"
    rows = []
    for k, (source, scene) in enumerate(EVAL_SCENES):
        write_mp4(bench / source / f"{scene}.mp4", seed=100 + k)
        write_spatial_features(root / "vsibench_features" / source / f"{scene}.pt", seed=100 + k, points=points)
        rows += [
            {"id": len(rows), "dataset": source, "scene_name": scene, "question_type": "object_counting",
             "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "2",
             "pruned": False},
            {"id": len(rows) + 1, "dataset": source, "scene_name": scene, "question_type": "object_rel_direction_easy",
             "question": "If I am standing by the sofa and facing the tv, is the door to my left or right?",
             "options": ["A. left", "B. right"], "ground_truth": "A", "pruned": k == 1},
            {"id": len(rows) + 2, "dataset": source, "scene_name": scene, "question_type": "room_size_estimation",
             "question": "What is the size of this room (in square meters)?", "options": None,
             "ground_truth": "21.5", "pruned": True},
        ]
    schema = pa.schema([("id", pa.int64()), ("dataset", pa.string()), ("scene_name", pa.string()),
                        ("question_type", pa.string()), ("question", pa.string()),
                        ("options", pa.list_(pa.string())), ("ground_truth", pa.string()), ("pruned", pa.bool_())])
    path = bench / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _bpe_tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer in Qwen2's format (special tokens, chat template), trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    import transformers

    # Qwen2's own tokenizer class (tokenizer_config.json then says "Qwen2Tokenizer", as the real checkpoint's)
    major = int(transformers.__version__.split(".")[0])
    cls = transformers.Qwen2Tokenizer if major >= 5 else getattr(transformers, "Qwen2TokenizerFast", PreTrainedTokenizerFast)
    fast = cls(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
               clean_up_tokenization_spaces=False)
    fast.chat_template = QWEN_CHAT_TEMPLATE
    return fast


def make_llava_checkpoint(root: Path, texts: list[str]) -> Path:
    """A tiny LLaVA-OneVision checkpoint + tokenizer + image processor, via save_pretrained."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    folder = root / "ckpt" / "llava-onevision-tiny"
    tok = _bpe_tokenizer(texts)
    vocab = len(tok)
    cfg = LlavaOnevisionConfig(vision_config=dict(model_type="siglip_vision_model", **VISION),
                               text_config=dict(model_type="qwen2", vocab_size=vocab, **TEXT),
                               image_token_index=tok.convert_tokens_to_ids("<image>"),
                               video_token_index=tok.convert_tokens_to_ids("<video>"),
                               vision_feature_layer=-1, vision_feature_select_strategy="full")
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    _image_processor().save_pretrained(folder)
    return folder


def _image_processor():
    try:
        from transformers import LlavaOnevisionImageProcessor

        return LlavaOnevisionImageProcessor(size={"height": VISION["image_size"], "width": VISION["image_size"]},
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    except Exception:  # an install without the slow processor's extras: SigLIP's, same normalisation
        from transformers import SiglipImageProcessor

        return SiglipImageProcessor(size={"height": VISION["image_size"], "width": VISION["image_size"]})


def make_world(root: Path) -> dict[str, Path]:
    """Everything: the training world, the benchmark, and the checkpoint (its tokenizer trained on both)."""
    vlm3r_json = make_vlm3r_world(root)
    parquet = make_vsibench_world(root)
    texts = [t["value"] for rec in json.loads(vlm3r_json.read_text()) for t in rec["conversations"]]
    import pyarrow.parquet as pq

    texts += [r["question"] for r in pq.read_table(parquet).to_pylist()]
    texts += [PRE, NA_POST, MCA_POST, "A. B. C. D. 0 1 2 3 4 5 6 7 8 9 ."]
    ckpt = make_llava_checkpoint(root, texts)
    return {"vlm3r_json": vlm3r_json, "vsibench_parquet": parquet, "checkpoint": ckpt,
            "vlm3r_videos": root / "data" / "vlm_3r_data", "vsibench_videos": root / "VSI-Bench"}
