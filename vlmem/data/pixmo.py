"""PixMo (allenai) parquet + locally downloaded images -> vlmem dataset folder.

Two subsets are understood, told apart by their columns:
  pixmo-cap                  image_url, caption, transcripts   -> caption questions ("caption")
  pixmo-ask-model-anything   image_url, image_sha256, question, answer -> open QA ("open_qa")

PixMo ships URLs, not images. Images are looked up under `images/` (recursively) by,
in order: `<image_sha256>` with or without an extension (when the column exists), then
the URL's basename. When `image_sha256` is present the file's SHA-256 must match; a
file named by a 64-hex digest must also hash to its name. Missing, mismatched or
undecodable images are skipped and listed in the manifest. Images are copied to
`images/<sha256><ext>` and the `video` column points at them.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq

from vlmem.data.writer import DatasetWriter
from vlmem.errors import DataError, UsageError
from vlmem.progress import progress_bar

SOURCE = "pixmo"
CAPTION_TEMPLATES = (
    "What is in this image?",
    "Describe this image.",
    "What do you see?",
    "Give a short description of this image.",
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def read_parquets(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of one parquet file or of every `*.parquet` under a folder (HF shards)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--parquet {path} does not exist")
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no .parquet files in this folder")
    rows, columns = [], None
    for f in files:
        try:
            t = pq.read_table(f)
        except Exception as exc:  # pyarrow raises several types on non-parquet input
            raise DataError(f"{f}: cannot read parquet ({exc})") from None
        if columns is None:
            columns = t.column_names
        elif set(t.column_names) != set(columns):
            raise DataError(f"{f}: columns {t.column_names} differ from {files[0]}'s {columns}")
        rows.extend(t.to_pylist())
    return rows, list(columns or [])


def index_images(images: Path) -> dict[str, Path]:
    """file name -> path and stem -> path for every file under `images` (first one wins)."""
    index: dict[str, Path] = {}
    stack = [Path(images)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    p = Path(entry.path)
                    index.setdefault(p.name, p)
                    index.setdefault(p.stem, p)
    return index


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def url_basename(url: str) -> str:
    return unquote(Path(urlparse(str(url)).path).name)


def find_image(row: dict, index: dict[str, Path]) -> tuple[Path | None, str]:
    """(path, how it was found) or (None, why not)."""
    sha = row.get("image_sha256")
    if sha:
        p = index.get(str(sha).lower())
        if p is not None:
            return p, "sha256"
    base = url_basename(row.get("image_url", ""))
    if base and base in index:
        return index[base], "url"
    tried = ([f"{sha}[.*]"] if sha else []) + ([base] if base else [])
    return None, f"no file named {' or '.join(tried) or '(no image_url)'}"


def _check_image(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # PIL raises many types on corrupt files
        return f"{path}: not a readable image ({type(exc).__name__})"
    return None


def pixmo_split(digest: str, val_fraction: float, test_fraction: float) -> str:
    """"train" / "val" / "test" from the image's sha256: deterministic, independent of row order
    and seed, and every question about one image lands in the same split."""
    u = int(digest[:8], 16) / 16 ** 8
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def prepare_pixmo(parquet: Path, images: Path, out: Path, overwrite: bool = False, seed: int = 0,
                  val_fraction: float = 0.1, test_fraction: float = 0.1) -> dict:
    """pixmo-cap or pixmo-ask-model-anything parquet + images folder -> `out`, split by image into
    train / val / test (`pixmo_split`; the seed's three splits, 80 / 10 / 10 by default)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must be in [0, 1) "
                         "and sum to less than 1 (the rest is train)")
    parquet, images, out = Path(parquet), Path(images), Path(out)
    rows, columns = read_parquets(parquet)
    if not images.is_dir():
        raise UsageError(f"--images {images} does not exist or is not a folder")
    if "caption" in columns:
        kind, dataset = "caption", "pixmo-cap"
    elif {"question", "answer"} <= set(columns):
        kind, dataset = "open_qa", "pixmo-ask-model-anything"
    else:
        raise DataError(f"{parquet}: neither pixmo-cap (image_url, caption) nor pixmo-ask-model-anything "
                        f"(image_url, question, answer) columns; found {columns}")
    if "image_url" not in columns:
        raise DataError(f"{parquet}: missing column 'image_url'; found {columns}")
    index = index_images(images)
    rng = random.Random(seed)
    options = {"parquet": str(parquet), "images": str(images), "seed": seed, "subset": dataset,
               "val_fraction": val_fraction, "test_fraction": test_fraction}
    copied: dict[Path, str | None] = {}
    missing: list[str] = []
    with DatasetWriter(out, SOURCE, overwrite, options) as w, progress_bar() as bar:
        task = bar.add_task(f"{dataset} rows", total=len(rows))
        for i, r in enumerate(rows):
            bar.advance(task)
            template = rng.randrange(len(CAPTION_TEMPLATES))  # drawn for every row: stable across skips
            item = f"row {i} ({r.get('image_url')})"
            if kind == "caption":
                question, answer = CAPTION_TEMPLATES[template], r.get("caption")
            else:
                question, answer = r.get("question"), r.get("answer")
            if not question or not str(question).strip() or answer is None or not str(answer).strip():
                w.skip(item, f"{parquet}: empty {'caption' if kind == 'caption' else 'question or answer'}")
                continue
            path, how = find_image(r, index)
            if path is None:
                missing.append(str(r.get("image_url")))
                w.skip(item, f"image missing under {images}: {how}")
                continue
            if path not in copied:
                digest = sha256_file(path)
                expected = r.get("image_sha256")
                problem = None
                if expected and digest != str(expected).lower():
                    problem = f"{path}: sha256 {digest[:12]}... does not match image_sha256 {str(expected)[:12]}..."
                elif _HEX64.match(path.stem) and path.stem != digest:
                    problem = f"{path}: file content does not hash to its sha256 name"
                else:
                    problem = _check_image(path)
                if problem:
                    copied[path] = None
                    w.skip(item, problem)
                    continue
                rel = f"images/{digest}{path.suffix.lower()}"
                dst = w.path(rel)
                if not dst.exists():
                    shutil.copy2(path, dst)
                copied[path] = rel
            rel = copied[path]
            if rel is None:
                w.skip(item, f"{path}: image rejected (see above)")
                continue
            w.add_rows([{
                "id": f"{dataset}-{i}", "dataset": dataset, "scene_name": Path(rel).stem, "question_type": kind,
                "question": str(question).strip(), "options": None, "ground_truth": str(answer).strip(),
                "answer_kind": "open", "video": rel,
                "split": pixmo_split(Path(rel).stem, val_fraction, test_fraction),
            }])
        return w.commit(extra={"missing_images": missing,
                               "images": len({v for v in copied.values() if v is not None})})
