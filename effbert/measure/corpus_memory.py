"""Peak memory of corpus preparation as the corpus grows (what ``effbert corpus-memory`` prints).

Each scale is a corpus of ``scale`` copies of the source's files (every copy's documents counted as new ones),
prepared exactly as the ``prepare_corpus`` stage prepares it (`effbert.data.corpus.iter_documents` then
`effbert.data.corpus.pack_corpus`) in a fresh Python process, which reports, next to its figures before the corpus
was touched (imports and tokenizer loaded):

- peak anonymous memory (``RssAnon``, sampled every 10 ms): the Python objects and Arrow buffers the preparation
  holds; flat memory means this stays put while the sequence count grows with the scale;
- peak resident set size (``VmHWM``), which also counts the pages of the memory-mapped Arrow files read back
  (page cache the kernel reclaims under pressure, so it grows with the files without being held memory);
- the tokenising workers' peak resident set size (``num_proc`` > 1).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from effbert.data.corpus import corpus_files, corpus_size

__all__ = ["CorpusMemory", "measure_scale", "scaled_corpus"]


@dataclass(frozen=True)
class CorpusMemory:
    """One scale's figures."""

    scale: int
    corpus_mb: float
    documents: int
    sequences: int
    tokens: int
    seconds: float
    baseline_anon_mb: float
    peak_anon_mb: float
    baseline_rss_mb: float
    peak_rss_mb: float
    workers_peak_rss_mb: float


def scaled_corpus(source: Path, scale: int, folder: Path) -> Path:
    """``scale`` copies of the corpus files of ``source`` (a file or folder) written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in corpus_files(source):
        for copy in range(scale):
            shutil.copyfile(file, folder / f"{copy:04d}-{file.name}")
    return folder


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``RssAnon``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} (corpus-memory needs Linux)")


class _AnonPeak:
    """The highest ``RssAnon`` seen by a thread sampling it every 10 ms while the ``with`` block runs."""

    def __init__(self) -> None:
        self.peak = _status_mb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _status_mb("RssAnon"))

    def __enter__(self) -> _AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_mb("RssAnon"))


def _child(corpus: str, tokenizer_source: str, max_seq_length: int, num_proc: int, work_dir: str) -> None:
    """Prepare ``corpus`` in this process and print its figures as JSON (the child side of `measure_scale`)."""
    from effbert.data.corpus import iter_documents, pack_corpus
    from effbert.models.teacher import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_source)
    baseline_anon, baseline_rss = _status_mb("RssAnon"), _status_mb("VmRSS")
    start = time.perf_counter()
    with _AnonPeak() as anon:
        documents = iter_documents(corpus)
        dataset, counts = pack_corpus(
            documents, tokenizer, max_seq_length, "corpus-memory", 0, work_dir=Path(work_dir), num_proc=num_proc
        )
        dataset.save_to_disk(str(Path(work_dir) / "saved"))
    record = {
        "documents": counts["documents"],
        "sequences": counts["sequences"],
        "tokens": counts["tokens"],
        "seconds": time.perf_counter() - start,
        "baseline_anon_mb": baseline_anon,
        "peak_anon_mb": anon.peak,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": _peak_mb(resource.RUSAGE_SELF),
        "workers_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN),
    }
    print(json.dumps(record))


def measure_scale(source: Path, scale: int, tokenizer_source: str, max_seq_length: int, num_proc: int) -> CorpusMemory:
    """Prepare ``scale`` copies of ``source`` in a child process and return its figures."""
    with tempfile.TemporaryDirectory(prefix="effbert-corpus-memory-") as tmp:
        corpus = scaled_corpus(source, scale, Path(tmp) / "corpus")
        size = corpus_size(corpus) / 2**20
        code = (
            "import sys; from effbert.measure.corpus_memory import _child; "
            "_child(*sys.argv[1:3], *map(int, sys.argv[3:5]), sys.argv[5])"
        )
        args = [str(corpus), tokenizer_source, str(max_seq_length), str(num_proc), str(Path(tmp) / "work")]
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"corpus preparation at scale {scale} failed: {done.stderr.strip().splitlines()[-1:]}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
    return CorpusMemory(scale=scale, corpus_mb=size, **record)
