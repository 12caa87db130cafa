"""`edgekd size check`: a CI gate on artifact size, with the growth attributed to the tensors that grew.

A size regression is only actionable when it names what grew, so the baseline keeps a per-part breakdown of every
artifact: for .onnx each initializer (and the bytes per consuming op type), for .pte the program flatbuffer, each
delegate blob, each constant-segment tensor and each named-data blob (XNNPACK's weights). The baseline is
rewritten only with --update-baseline (docs/architecture.md, rule 9: nothing a user made is overwritten without an
explicit flag).

Tolerance: an artifact regresses when it grows by more than max(tolerance_bytes, tolerance_pct% of its baseline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import EdgekdError, GateFailed
from edgekd.report.size_breakdown import breakdown

BASELINE_VERSION = 1
ARTIFACT_SUFFIXES = (".onnx", ".pte", ".engine", ".plan", ".tflite", ".bin")


# ------------------------------------------------------------------------------------------------ collection
def collect(outs: list[Path]) -> dict[str, Path]:
    """Artifacts under each OUT argument, keyed by artifact name, never by the folder given on the command line.

    An artifact of a run (a folder with manifest.json) is `<run>/<path inside the run folder>`, the run being the
    manifest's recipe name (else its folder's name): `out/tiny`, `out/` and `/tmp/ci-out/` holding the same run
    give the same keys, so a baseline recorded from one folder compares like for like against another. Other files
    below OUT are keyed by their path inside OUT; a file given directly by its name. A run folder contributes the
    artifacts its manifest lists and every artifact file beside it, skipping hidden temporary files.
    """
    from edgekd.report.manifest import read_manifest

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
            manifest = read_manifest(m)
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
    from edgekd.inputs import read_json

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
