"""Reading a user-given input file (recipe, profile, manifest, baseline, plan, a model folder's config.json): one
EdgekdError naming the file and key for anything that is not the expected text or JSON.

Below config/ and every stage on purpose: it imports nothing of edgekd but the errors, so any module can read its
inputs without depending on configuration loading (tests/unit/test_architecture.py: no import cycle).
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError

MAX_INPUT_BYTES = 16 << 20  # a recipe, profile, manifest or baseline is kilobytes; more is a wrong file


def read_text(path: Path, key: str = "", what: str = "file") -> str:
    """The UTF-8 text of a user-given input file, or one EdgekdError that says why not.

    A directory, a device, an executable or an image given where a recipe, profile, manifest or baseline belongs is
    named as such instead of surfacing as UnicodeDecodeError from deep inside a parser."""
    path = Path(path)
    if path.is_dir():
        raise EdgekdError(f"is a directory, not a {what}", file=str(path), key=key)
    if not path.exists():
        raise EdgekdError(f"{what} not found", file=str(path), key=key)
    if not path.is_file():
        raise EdgekdError(f"not a regular file (a device, socket or pipe), not a {what}", file=str(path), key=key)
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise EdgekdError(f"{path.stat().st_size} bytes is too large for a {what} "
                              f"(limit {MAX_INPUT_BYTES >> 20} MiB)", file=str(path), key=key)
        data = path.read_bytes()
    except OSError as exc:
        raise EdgekdError(f"cannot read: {exc.strerror or exc}", file=str(path), key=key) from exc
    kind = "an ELF executable" if data.startswith(b"\x7fELF") else "binary data"
    if b"\0" in data:
        raise EdgekdError(f"not a text file ({kind}); expected a {what}", file=str(path), key=key)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgekdError(f"not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                          f"expected a {what}", file=str(path), key=key) from exc


def read_json(path: Path, key: str = "", what: str = "JSON file", expect: type = dict):
    """Parse a JSON input file whose top level must be `expect`; every failure is one EdgekdError naming the file."""
    import json

    text = read_text(path, key, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgekdError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno})", file=str(path), key=key) from exc
    except RecursionError as exc:
        raise EdgekdError("JSON nested too deeply", file=str(path), key=key) from exc
    if not isinstance(data, expect):
        raise EdgekdError(f"top level must be a JSON {_json_type(expect)}, not {_json_type(type(data))}",
                          file=str(path), key=key)
    return data


def _json_type(t: type) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(t, t.__name__)
