"""Atomic writes (ddlib.files): old or new content, never half; unique temporary files; no litter."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ddlib.files import atomic_open, atomic_write_bytes, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def test_writes_text_and_bytes_with_ordinary_permissions(tmp_path):
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")  # parent folders are made
    assert p.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.txt"]


def test_an_error_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    p = atomic_write_text(tmp_path / "table.csv", "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(p, "w") as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert p.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["table.csv"]


def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path):
    p = atomic_write_bytes(tmp_path / "checkpoint.pt", b"old")
    code = ("import os, signal, sys; from ddlib.files import atomic_open\n"
            "with atomic_open(sys.argv[1], 'wb', fsync=True) as f:\n"
            "    f.write(b'new, first half'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code, str(p)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == -9
    assert p.read_bytes() == b"old"
    left = [x.name for x in tmp_path.iterdir() if x.name != "checkpoint.pt"]
    assert len(left) == 1 and left[0].startswith(".checkpoint.pt.") and left[0].endswith(".tmp")  # hidden, beside it


def test_temporary_names_are_unique_so_concurrent_writers_never_share_one(tmp_path):
    p = tmp_path / "index.json"
    with atomic_open(p, "w") as f1, atomic_open(p, "w") as f2:  # two writers of one file at once
        temps = sorted(x.name for x in tmp_path.iterdir())
        assert len(temps) == 2 and all(t.startswith(".index.json.") and t.endswith(".tmp") for t in temps)
        f1.write("first")
        f2.write("second")
    assert p.read_text() == "first"  # f1 closes last: the last to finish wins, whole
    assert [x.name for x in tmp_path.iterdir()] == ["index.json"]


def test_fsync_only_when_asked(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    atomic_write_bytes(tmp_path / "a", b"x")
    assert calls == []
    atomic_write_bytes(tmp_path / "a", b"y", fsync=True)
    assert len(calls) == 1


def test_only_whole_file_modes():
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open("x", "a"):
            pass
