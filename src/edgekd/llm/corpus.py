"""Real text for perplexity and prompts: Jane Austen's novels from Debian's r-cran-janeaustenr.

The package stores the novels in R's lazy-load database (data/Rdata.rdx + Rdata.rdb): the .rdx index is a gzipped
R serialization mapping each novel to (offset, length) in the .rdb, whose chunks are a 4-byte length followed by a
zlib stream of a serialized character vector. `rdata` parses the serialized objects.
"""

from __future__ import annotations

import functools
import gzip
import os
import warnings
import zlib
from pathlib import Path

from edgekd.errors import EdgekdError

JANEAUSTENR = Path(os.environ.get("EDGEKD_JANEAUSTENR", "/usr/lib/R/site-library/janeaustenr"))
NOVELS = ("prideprejudice", "emma", "persuasion", "sensesensibility", "mansfieldpark", "northangerabbey")


def _parse(raw: bytes):
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS": lazy-load chunks have no header
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


@functools.lru_cache(maxsize=8)
def austen_lines(novel: str = "prideprejudice") -> tuple[str, ...]:
    """The novel's lines as R stores them (empty strings between paragraphs)."""
    if novel not in NOVELS:
        raise EdgekdError("unknown Jane Austen novel", key="llm.corpus", hint=f"allowed: {', '.join(NOVELS)}")
    data = JANEAUSTENR / "data"
    if not (data / "Rdata.rdx").is_file():
        raise EdgekdError("the Jane Austen corpus is not installed", file=str(data / "Rdata.rdx"),
                          hint="apt-get install r-cran-janeaustenr (or set EDGEKD_JANEAUSTENR)")
    index = _parse(gzip.decompress((data / "Rdata.rdx").read_bytes()))
    offset, length = (int(v) for v in index["variables"][novel])
    with open(data / "Rdata.rdb", "rb") as fh:
        fh.seek(offset)
        chunk = fh.read(length)
    return tuple(str(line) for line in _parse(zlib.decompress(chunk[4:])))


def corpus_text(corpus: str = "austen:prideprejudice") -> str:
    """The novel as paragraphs joined by blank lines (lines of a paragraph joined by spaces)."""
    scheme, _, novel = corpus.partition(":")
    if scheme != "austen":
        raise EdgekdError(f"unknown corpus {corpus!r}", key="llm.corpus",
                          hint=f"allowed: {', '.join('austen:' + n for n in NOVELS)}")
    paragraphs, current = [], []
    for line in austen_lines(novel):
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def default_prompts(corpus: str = "austen:prideprejudice", count: int = 3) -> list[str]:
    """Real opening sentences of narrative paragraphs (skipping the title and chapter headings)."""
    paragraphs = [p for p in corpus_text(corpus).split("\n\n") if len(p.split()) >= 12]
    prompts = []
    for p in paragraphs:
        words = p.split()
        prompts.append(" ".join(words[:12]))
        if len(prompts) == count:
            break
    return prompts


def corpus_tokens(tokenizer, corpus: str, count: int) -> list[int]:
    """The first `count` tokens of the corpus: a fixed slice, so perplexities of different runs compare."""
    text = corpus_text(corpus)
    ids = tokenizer(text[: count * 12], add_special_tokens=False)["input_ids"]
    if len(ids) < count:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids[:count])


def austen_data(cfg, bundle):
    """`data.source: py:edgekd.llm.corpus:austen_data`: windows of token ids (seq_len each) from two novels.

    Calibration (for recipes that quantize with data) comes from the start of Emma and the train split
    (`data.train_samples`, for QAT-KD) from the windows of Emma that follow it; eval comes from Pride and Prejudice.
    So nothing trained or calibrated on overlaps the evaluation text, and the LLM verify stage's perplexity slice
    (llm.corpus, by default the first tokens of Pride and Prejudice) is never trained on.
    """
    import torch

    from edgekd.context import Data, Split

    tokenizer = bundle.meta["tokenizer"]

    def windows(novel: str, n: int) -> list[tuple]:
        ids = corpus_tokens(tokenizer, f"austen:{novel}", n * cfg.seq_len)
        return [(torch.tensor([ids[i * cfg.seq_len:(i + 1) * cfg.seq_len]]),) for i in range(len(ids) // cfg.seq_len)]

    cal_n, train_n = cfg.calibration_samples, cfg.train_samples
    emma = windows("emma", cal_n + train_n)
    calibration = Split(inputs=emma[:cal_n], description=f"Emma, first {cal_n} windows")
    train = None
    if train_n:
        picked = emma[cal_n:cal_n + train_n]
        train = Split(inputs=picked, description=f"Emma, windows {cal_n + 1}-{cal_n + len(picked)} of "
                                                 f"{cfg.seq_len} tokens (after the calibration windows)")
    evaluation = Split(inputs=windows("prideprejudice", cfg.eval_samples),
                       description=f"Pride and Prejudice, first {cfg.eval_samples} windows of {cfg.seq_len} tokens")
    return Data(calibration=calibration, eval=evaluation, train=train,
                source="janeaustenr (Debian r-cran-janeaustenr)")
