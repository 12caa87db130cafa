"""Atomic writes (docs/architecture.md, rule 9): write to a temporary name beside the target, then rename when complete.

A crash or a Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed onto `target`, on failure removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_bytes(target: Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: Path, text: str) -> Path:
    return write_bytes(target, text.encode())


def write_json(target: Path, obj: object) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ output claims
@contextmanager
def claim(folder: Path, name: str, what: str = "output") -> Iterator[Path]:
    """Hold an exclusive lock on `folder/.NAME.lock` for the block; a second holder gets one EdgekdError.

    Two runs writing the same out/NAME would both pass the "exists" check and one would delete the other's result.
    flock is released by the kernel when a process dies (SIGKILL included), so a crash never leaves a stale claim;
    the lock file is removed on release and re-checked after locking, so a file removed meanwhile is not trusted."""
    import fcntl

    from edgekd.errors import EdgekdError

    path = Path(folder) / f".{name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EdgekdError(f"another edgekd run (pid {holder}) is writing this {what} now; nothing was changed",
                              file=str(Path(folder) / name), hint="wait for it to finish, or use another --out")
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file after we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(folder: Path, held: str) -> list[Path]:
    """Remove `.NAME.staging-PID` / `.NAME.old-PID` / `.NAME.tmp-PID` left by processes that no longer exist
    (SIGKILL, power loss): they can be hundreds of MB and nothing else would ever delete them.

    The caller holds the claim on `held`; another NAME's leftovers go only while nobody holds that NAME's claim
    either (a run in another PID namespace, on a shared disk, looks dead by its PID but still holds its lock)."""
    import re

    from edgekd.errors import EdgekdError

    removed = []
    if not Path(folder).is_dir():
        return removed
    for entry in sorted(Path(folder).iterdir()):
        match = re.fullmatch(r"\.(.+)\.(staging|old|tmp)-(\d+)", entry.name)
        if not match or int(match.group(3)) == os.getpid() or pid_alive(int(match.group(3))):
            continue
        try:
            if match.group(1) == held:
                _remove(entry)
            else:
                with claim(folder, match.group(1)):
                    _remove(entry)
        except EdgekdError:  # that NAME is being written right now
            continue
        removed.append(entry)
    return removed


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def prune_empty_dirs(folder: Path) -> None:
    """Remove `folder` and its subfolders bottom-up where they hold no file: a failed run leaves no empty shells."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()),
                      key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass
