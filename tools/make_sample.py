"""Rebuild data/sample/ (the bundled offline sample) from the real files in ../shared/data.

Deterministic: the same source files give byte-identical sample files. Run from the project root:
    .venv/bin/python tools/make_sample.py ../shared/data
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
from pathlib import Path

SEED = 20211
SST2_TRAIN_ROWS = 16000
SQUAD_TRAIN_QUESTIONS = 1600
SQUAD_DEV_QUESTIONS = 600


def subsample_tsv(src: Path, dst: Path, rows: int | None) -> None:
    lines = src.read_bytes().split(b"\n")
    header, body = lines[0], [line for line in lines[1:] if line]
    if rows is not None and rows < len(body):
        keep = sorted(random.Random(SEED).sample(range(len(body)), rows))
        body = [body[i] for i in keep]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"\n".join([header, *body]) + b"\n")


def carve_squad(src: Path, out_dir: Path) -> None:
    """Split dev-v1.1 by article into a training file and a dev file (official names, official structure)."""
    data = json.loads(src.read_text(encoding="utf-8"))
    articles = list(data["data"])
    random.Random(SEED).shuffle(articles)

    def questions(article: dict) -> int:
        return sum(len(p["qas"]) for p in article["paragraphs"])

    dev, train = [], []
    for article in articles:
        if sum(map(questions, dev)) < SQUAD_DEV_QUESTIONS:
            dev.append(article)
        elif sum(map(questions, train)) < SQUAD_TRAIN_QUESTIONS:
            train.append(article)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train-v1.1.json", train), ("dev-v1.1.json", dev)):
        doc = {"data": part, "version": data["version"]}
        (out_dir / name).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def main(shared: Path) -> None:
    out = Path("data/sample")
    for folder in ("glue", "squad", "corpus"):  # README.md (provenance) stays
        shutil.rmtree(out / folder, ignore_errors=True)
    glue = shared / "glue"
    subsample_tsv(glue / "SST-2/train.tsv", out / "glue/SST-2/train.tsv", SST2_TRAIN_ROWS)
    for split in ("dev", "test"):
        shutil.copyfile(glue / f"SST-2/{split}.tsv", out / f"glue/SST-2/{split}.tsv")
    (out / "glue/MRPC").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        shutil.copyfile(glue / f"MRPC/{split}.tsv", out / f"glue/MRPC/{split}.tsv")
    carve_squad(shared / "squad/dev-v1.1.json", out / "squad")
    (out / "corpus").mkdir(parents=True)
    shutil.copyfile(shared / "corpus/wikitext-2-raw/wiki.valid.raw", out / "corpus/wiki.valid.raw")
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "README.md"):
        print(f"| {path.relative_to(out)} | {path.stat().st_size} | {hashlib.sha256(path.read_bytes()).hexdigest()} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
