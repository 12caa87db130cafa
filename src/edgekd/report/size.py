"""`edgekd size check`: a CI gate on artifact size, with the growth attributed to the tensors that grew.

A size regression is only actionable when it names what grew, so the baseline keeps a per-part breakdown of every
artifact: for .onnx each initializer (and the bytes per consuming op type), for .pte the program flatbuffer, each
delegate blob, each constant-segment tensor and each named-data blob (XNNPACK's weights). The baseline is
rewritten only with --update-baseline (docs/architecture.md, rule 9: nothing a user made is overwritten without an
explicit flag).

Tolerance: an artifact regresses when it grows by more than max(tolerance_bytes, tolerance_pct% of its baseline).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import EdgekdError, GateFailed

BASELINE_VERSION = 1
ARTIFACT_SUFFIXES = (".onnx", ".pte", ".engine", ".plan", ".tflite", ".bin")


# ------------------------------------------------------------------------------------------------ breakdowns
def onnx_breakdown(path: Path) -> dict:
    """Initializer bytes by name and by the op type that consumes them (first consumer), plus Constant nodes."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise EdgekdError(f"not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          file=str(path)) from exc
    parts: dict[str, int] = {}
    groups: dict[str, int] = {}

    def tensor_bytes(t) -> int:
        for entry in t.external_data:
            if entry.key == "length":
                return int(entry.value)
        if t.raw_data:
            return len(t.raw_data)
        numel = 1
        for d in t.dims:
            numel *= int(d)
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except Exception:  # noqa: BLE001 - unusual dtypes (strings): count the stored fields instead
            itemsize = 4
        return numel * itemsize

    graphs = [model.graph]
    consumers: dict[str, str] = {}
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and node.op_type == "Constant":
                    key = f"{node.output[0]} (Constant)"
                    parts[key] = tensor_bytes(attr.t)
                    groups["Constant"] = groups.get("Constant", 0) + parts[key]
                if attr.g is not None and attr.g.ByteSize():
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
        for init in graph.initializer:
            parts[init.name] = tensor_bytes(init)
    for name, size in parts.items():
        if name.endswith(" (Constant)"):
            continue
        op = consumers.get(name, "unused")
        groups[op] = groups.get(op, 0) + size
    return {"parts": parts, "groups": groups}


def pte_breakdown(path: Path) -> dict:
    """ExecuTorch program parts: flatbuffer, delegate blobs, constant-segment tensors, named data (XNNPACK weights)."""
    try:
        from executorch.exir._serialize._program import _flatbuffer_to_program, _get_extended_header
    except ImportError as exc:
        raise EdgekdError("executorch is not installed: cannot attribute .pte growth", file=str(path)) from exc
    data = Path(path).read_bytes()
    header = _get_extended_header(data)
    program_size = header.program_size if header is not None and header.is_valid() else len(data)
    base = header.segment_base_offset if header is not None and header.is_valid() else 0
    try:
        program = _flatbuffer_to_program(data[:program_size])
    except Exception as exc:  # noqa: BLE001 - flatbuffer parsing raises assorted errors
        raise EdgekdError(f"not a readable ExecuTorch program: {exc}", file=str(path)) from exc
    parts: dict[str, int] = {"program flatbuffer": program_size}
    groups: dict[str, int] = {"program flatbuffer": program_size}
    segment_sizes = [s.size for s in program.segments]

    def add(name: str, group: str, size: int) -> None:
        parts[name] = parts.get(name, 0) + size
        groups[group] = groups.get(group, 0) + size

    for plan in program.execution_plan:
        shapes = {}
        for value in plan.values:
            t = value.val
            if type(t).__name__ == "Tensor" and t.data_buffer_idx and t.allocation_info is None:
                shapes[t.data_buffer_idx] = f"{_scalar_name(t.scalar_type)}{list(t.sizes)}"
        for i, d in enumerate(plan.delegates):
            loc = getattr(d.processed.location, "name", str(d.processed.location))
            if loc == "SEGMENT" and d.processed.index < len(segment_sizes):
                size = segment_sizes[d.processed.index]
            elif d.processed.index < len(program.backend_delegate_data):
                size = len(program.backend_delegate_data[d.processed.index].data)
            else:
                size = 0
            add(f"delegate {plan.name}[{i}] {d.id}", f"delegate {d.id}", size)
        if program.constant_segment and len(program.constant_segment.offsets) > 1 and segment_sizes:
            offsets = list(program.constant_segment.offsets)
            seg_size = segment_sizes[program.constant_segment.segment_index]
            for idx in range(1, len(offsets)):
                end = offsets[idx + 1] if idx + 1 < len(offsets) else seg_size
                name = f"constant[{idx}] {shapes.get(idx, '')}".strip()
                if name not in parts:
                    add(name, "constant segment", end - offsets[idx])
        for idx, buf in enumerate(program.constant_buffer):
            if idx and len(buf.storage):
                add(f"constant[{idx}] {shapes.get(idx, '')}".strip(), "constant buffer (inline)", len(buf.storage))
    labels: dict[str, str] = {}
    for plan in program.execution_plan:
        for d in plan.delegates:
            loc = getattr(d.processed.location, "name", str(d.processed.location))
            if d.id == "XnnpackBackend" and loc == "SEGMENT" and d.processed.index < len(program.segments):
                seg = program.segments[d.processed.index]
                labels.update(xnnpack_weight_labels(data[base + seg.offset: base + seg.offset + seg.size]))
    for entry in program.named_data:
        if entry.segment_index < len(segment_sizes):
            label = labels.get(entry.key)
            name = f"named data {entry.key[:16]} {label}" if label else f"named data {entry.key}"
            add(name, "named data (delegate weights)", segment_sizes[entry.segment_index])
    return {"parts": parts, "groups": groups}


def xnnpack_weight_labels(blob: bytes) -> dict[str, str]:
    """{named-data key: "float32[32, 32]"} for the weights an XNNPACK delegate blob refers to.

    Why: XNNPACK stores weights as named data keyed by a content hash, so without this a grown model shows only
    hashes. The delegate's flatbuffer gives each constant's dtype and shape (tensor names are not kept by
    XNNPACK). Best effort: any parsing problem gives no labels, never a failed size check.
    """
    import os
    import tempfile

    try:
        from importlib import resources

        from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as xs
        from executorch.exir._serialize._flatbuffer import _flatc_decompile

        header = xs.XNNHeader.from_bytes(blob[: xs.XNNHeader.EXPECTED_LENGTH])
        flatbuffer = blob[header.flatbuffer_offset: header.flatbuffer_offset + header.flatbuffer_size]
        with tempfile.TemporaryDirectory() as tmp:
            schema = os.path.join(tmp, "schema.fbs")
            with open(schema, "wb") as fh:
                fh.write(resources.files(xs.serialization_package).joinpath("schema.fbs").read_bytes())
            with open(os.path.join(tmp, "graph.bin"), "wb") as fh:
                fh.write(flatbuffer)
            _flatc_decompile(tmp, schema, os.path.join(tmp, "graph.bin"))
            with open(os.path.join(tmp, "graph.json")) as fh:  # flatc writes bare inf/nan (clamp bounds)
                graph = json.loads(re.sub(r"(?<=[:\[,\s])[-+]?(inf|nan)\b", "null", fh.read()))
    except Exception:  # noqa: BLE001 - an older/newer XNNPACK format: sizes stay exact, only labels are lost
        return {}
    keys = {i: c.get("named_key", "") for i, c in enumerate(graph.get("constant_data") or [])}
    labels = {}
    for value in graph.get("xvalues") or []:
        tensor = value.get("xvalue_union") or {}
        tensor = tensor.get("tensor_value", tensor)  # quantized values wrap the plain tensor value
        key = keys.get(int(tensor.get("constant_buffer_idx") or 0))
        if key:
            dtype = str(tensor.get("datatype", "")).removeprefix("xnn_datatype_")
            labels[key] = f"{dtype}{list(tensor.get('dims') or [])}"
    return labels


_SCALAR = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
           11: "bool", 15: "bfloat16"}


def _scalar_name(st) -> str:
    value = getattr(st, "value", st)
    return _SCALAR.get(int(value), f"dtype{int(value)}")


def breakdown(path: Path) -> dict:
    """Bytes, sha256 and the per-part breakdown of one artifact (parts empty for formats we cannot parse)."""
    from edgekd.report.atomic import sha256_of

    path = Path(path)
    info = {"bytes": path.stat().st_size, "sha256": sha256_of(path), "format": path.suffix.lstrip(".")}
    if path.suffix == ".onnx":
        info.update(onnx_breakdown(path))
    elif path.suffix == ".pte":
        info.update(pte_breakdown(path))
    else:
        info.update({"parts": {}, "groups": {}})
    return info


# ------------------------------------------------------------------------------------------------ collection
def collect(outs: list[Path]) -> dict[str, Path]:
    """Artifacts under each OUT argument, keyed by artifact name, never by the folder given on the command line.

    An artifact of a run (a folder with manifest.json) is `<run>/<path inside the run folder>`, the run being the
    manifest's recipe name (else its folder's name): `out/tiny`, `out/` and `/tmp/ci-out/` holding the same run
    give the same keys, so a baseline recorded from one folder compares like for like against another. Other files
    below OUT are keyed by their path inside OUT; a file given directly by its name. A run folder contributes the
    artifacts its manifest lists and every artifact file beside it, skipping hidden temporary files.
    """
    from edgekd.config.loading import read_json

    found: dict[str, Path] = {}

    def add(key: str, path: Path) -> None:
        if key in found and found[key].resolve() != path.resolve():
            raise EdgekdError(f"two artifacts have the name {key!r}: {found[key]} and {path}", key="OUT",
                              hint="check each run (or each set of runs with distinct names) against its own "
                                   "baseline")
        found[key] = path

    for out in outs:
        out = Path(out)
        if out.is_file():
            add(out.name, out)
            continue
        if not out.is_dir():
            raise EdgekdError("not a file or folder", file=str(out), key="OUT")
        runs: dict[Path, str] = {}
        listed: set[Path] = set()
        for m in sorted(out.rglob("manifest.json")):
            if any(part.startswith(".") for part in m.relative_to(out).parts):
                continue  # a staging folder of a run in progress
            manifest = read_json(m, what="manifest")
            name = (manifest.get("recipe") or {}).get("name") if isinstance(manifest.get("recipe"), dict) else None
            runs[m.parent.resolve()] = str(name or m.parent.resolve().name)
            for rec in manifest.get("artifacts") or []:
                if not isinstance(rec, dict):
                    raise EdgekdError("artifact entry must be a JSON object", file=str(m), key="artifacts[]")
                p = Path(rec.get("path", ""))
                p = p if p.is_absolute() else m.parent / p
                if p.is_file():
                    listed.add(p.resolve())
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in ARTIFACT_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(out).parts))
        for p in files:
            if runs and p.resolve() not in listed and p.suffix in (".bin",):
                continue
            run = next((r for r in p.resolve().parents if r in runs), None)
            add(f"{runs[run]}/{p.resolve().relative_to(run).as_posix()}" if run is not None
                else p.relative_to(out).as_posix(), p)
    if not found:
        raise EdgekdError("no artifacts found", file=", ".join(str(o) for o in outs), key="OUT",
                          hint=f"expected files ending in {', '.join(ARTIFACT_SUFFIXES)}")
    return found


# ------------------------------------------------------------------------------------------------ compare
@dataclass
class PartChange:
    name: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass
class ArtifactCheck:
    key: str
    status: str  # ok, regressed, shrunk, new, removed
    before: int | None
    after: int | None
    allowed: int = 0
    grown: list[PartChange] = field(default_factory=list)
    shrunk: list[PartChange] = field(default_factory=list)
    groups: list[PartChange] = field(default_factory=list)

    @property
    def delta(self) -> int:
        return (self.after or 0) - (self.before or 0)

    def line(self) -> str:
        if self.status == "new":
            return f"{self.key}: new artifact, {self.after} B (not in the baseline)"
        if self.status == "removed":
            return f"{self.key}: in the baseline ({self.before} B) but not found now"
        pct = 100.0 * self.delta / self.before if self.before else 0.0
        text = f"{self.key}: {self.before} -> {self.after} B ({self.delta:+d} B, {pct:+.2f}%, allowed +{self.allowed} B)"
        if self.grown:
            text += "; grown: " + ", ".join(f"{c.name} {c.before}->{c.after} B" for c in self.grown[:8])
            if len(self.grown) > 8:
                text += f" and {len(self.grown) - 8} more"
        return text


def _pair_hashed(before: dict[str, int], after: dict[str, int], prefix: str = "named data ") -> tuple[dict, dict]:
    """Named-data keys are content hashes: retrained weights get new keys at the same size. Pair removed and new
    blobs of equal size as "same tensor, new contents", so only real growth is attributed."""
    gone = sorted((v, k) for k, v in before.items() if k.startswith(prefix) and k not in after)
    new = sorted((v, k) for k, v in after.items() if k.startswith(prefix) and k not in before)
    before, after = dict(before), dict(after)
    free: dict[int, list[str]] = {}
    for size, key in gone:
        free.setdefault(size, []).append(key)
    for size, key in new:
        if free.get(size):
            old = free[size].pop()
            before.pop(old)
            after.pop(key)
    return before, after


def diff_parts(before: dict[str, int], after: dict[str, int]) -> tuple[list[PartChange], list[PartChange]]:
    before, after = _pair_hashed(before, after)
    grown, shrunk = [], []
    for name in sorted(set(before) | set(after)):
        change = PartChange(name, int(before.get(name, 0)), int(after.get(name, 0)))
        if change.delta > 0:
            grown.append(change)
        elif change.delta < 0:
            shrunk.append(change)
    grown.sort(key=lambda c: -c.delta)
    shrunk.sort(key=lambda c: c.delta)
    return grown, shrunk


def compare(baseline: dict, current: dict[str, dict], tolerance_bytes: int, tolerance_pct: float) -> list[ArtifactCheck]:
    checks = []
    base_artifacts = baseline.get("artifacts", {})
    for key in sorted(set(base_artifacts) | set(current)):
        b, c = base_artifacts.get(key), current.get(key)
        if b is None:
            checks.append(ArtifactCheck(key, "new", None, c["bytes"]))
            continue
        if c is None:
            checks.append(ArtifactCheck(key, "removed", b["bytes"], None))
            continue
        allowed = max(int(tolerance_bytes), int(b["bytes"] * tolerance_pct / 100.0))
        delta = c["bytes"] - b["bytes"]
        status = "regressed" if delta > allowed else ("shrunk" if delta < 0 else "ok")
        grown, shrunk = diff_parts(b.get("parts", {}), c.get("parts", {}))
        g_grown, _ = diff_parts(b.get("groups", {}), c.get("groups", {}))
        checks.append(ArtifactCheck(key, status, b["bytes"], c["bytes"], allowed, grown, shrunk, g_grown))
    return checks


def read_baseline(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EdgekdError("baseline not found", file=str(path), key="--baseline",
                          hint="create it with: edgekd size check --baseline FILE OUT... --update-baseline")
    from edgekd.config.loading import read_json

    data = read_json(path, key="--baseline", what="baseline")
    if not isinstance(data.get("artifacts"), dict):
        raise EdgekdError("baseline has no 'artifacts' mapping", file=str(path), key="artifacts")
    for key, rec in data["artifacts"].items():
        if not isinstance(rec, dict) or not isinstance(rec.get("bytes"), int):
            raise EdgekdError("baseline entry lacks an integer 'bytes'", file=str(path), key=f"artifacts.{key}")
    return data


def write_baseline(path: Path, current: dict[str, dict]) -> Path:
    from edgekd.report.atomic import write_json

    return write_json(Path(path), {"version": BASELINE_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "artifacts": current})


@dataclass
class SizeResult:
    checks: list[ArtifactCheck]
    updated: bool
    baseline_existed: bool
    allow_removed: bool = False

    @property
    def regressions(self) -> list[ArtifactCheck]:
        """What fails the gate: growth beyond the tolerance, and an artifact that is gone (a dropped export or a
        check pointed at the wrong folder) unless --allow-removed."""
        return [c for c in self.checks if c.status == "regressed" or (c.status == "removed" and not self.allow_removed)]


def size_check(baseline_path: Path, outs: list[Path], tolerance_bytes: int = 0, tolerance_pct: float = 0.0,
               update_baseline: bool = False, allow_removed: bool = False) -> SizeResult:
    """Compare every artifact under OUT... with the baseline; rewrite the baseline only when asked."""
    if tolerance_bytes < 0 or tolerance_pct < 0:
        raise EdgekdError("tolerances must be >= 0", key="--tolerance-bytes/--tolerance-pct")
    found = collect([Path(o) for o in outs])
    current = {key: breakdown(path) for key, path in found.items()}
    existed = Path(baseline_path).is_file()
    if existed:
        checks = compare(read_baseline(baseline_path), current, tolerance_bytes, tolerance_pct)
    elif update_baseline:
        checks = [ArtifactCheck(k, "new", None, v["bytes"]) for k, v in sorted(current.items())]
    else:
        read_baseline(baseline_path)  # raises the clear "baseline not found" error
        checks = []
    if update_baseline:
        write_baseline(baseline_path, current)
    return SizeResult(checks, update_baseline, existed, allow_removed)


def raise_on_regression(result: SizeResult) -> None:
    if result.regressions and not result.updated:
        raise GateFailed(f"{len(result.regressions)} artifact(s) grew beyond the tolerance or are gone: "
                         + " | ".join(c.line() for c in result.regressions))


def markdown(result: SizeResult) -> str:
    lines = ["| artifact | baseline B | now B | delta | status | grown parts |", "|---|---|---|---|---|---|"]
    for c in result.checks:
        grown = ", ".join(f"{g.name} (+{g.delta} B)" for g in c.grown[:5]) or "-"
        lines.append(f"| {c.key} | {c.before if c.before is not None else '-'} | "
                     f"{c.after if c.after is not None else '-'} | {c.delta:+d} | {c.status} | {grown} |")
    return "\n".join(lines) + "\n"
