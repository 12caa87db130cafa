from __future__ import annotations

import pytest

from edgekd.report.atomic import atomic_path, sha256_of, write_json


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_write_json_and_hash(tmp_path):
    path = write_json(tmp_path / "m.json", {"a": 1})
    assert path.read_text().strip().startswith("{") and len(sha256_of(path)) == 64
