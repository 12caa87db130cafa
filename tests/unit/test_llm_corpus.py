"""The Jane Austen corpus read from Debian's r-cran-janeaustenr lazy-load database."""

from __future__ import annotations

import pytest

from edgekd.errors import EdgekdError
from edgekd.llm import corpus

needs_corpus = pytest.mark.skipif(not (corpus.JANEAUSTENR / "data" / "Rdata.rdx").is_file(),
                                  reason="r-cran-janeaustenr is not installed (apt-get install r-cran-janeaustenr)")


@needs_corpus
def test_pride_and_prejudice_opens_with_its_first_sentence():
    text = corpus.corpus_text("austen:prideprejudice")
    assert text.startswith("PRIDE AND PREJUDICE")
    assert "It is a truth universally acknowledged, that a single man in possession of a good fortune" in text
    assert len(text) > 600_000
    prompts = corpus.default_prompts("austen:prideprejudice", 3)
    assert prompts[0] == "It is a truth universally acknowledged, that a single man in possession"
    assert len(prompts) == 3 and all(len(p.split()) == 12 for p in prompts)


@needs_corpus
def test_every_novel_reads():
    for novel in corpus.NOVELS:
        assert len(corpus.austen_lines(novel)) > 5000


def test_unknown_corpus_names_the_allowed_values():
    with pytest.raises(EdgekdError) as info:
        corpus.corpus_text("gutenberg:moby")
    assert "austen:prideprejudice" in info.value.render()
