"""The one atomic writer (isa/output.py): the umask's mode, fsync before the rename, no
temporary file left by a failure or an interrupt, errors naming the path as given, and the
temporaries of killed processes removed by the next write."""
import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from isa.output import atomic_write


@pytest.fixture
def umask():
    """Sets the process umask for one test and puts the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write(tmp_path / "out.json", b"{}")
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == mode


def test_parts_are_written_whole_and_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))[1])
    atomic_write(tmp_path / "prog.bin", b"ab", memoryview(b"cd"), b"")
    assert (tmp_path / "prog.bin").read_bytes() == b"abcd"
    assert events[:2] == ["fsync", "rename"]        # then the folder's fsync


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupt"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, failure):
    (tmp_path / "keep.json").write_bytes(b"old")

    def fail(_fd):
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(failure)) as caught:
        atomic_write(tmp_path / "keep.json", b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
    assert (tmp_path / "keep.json").read_bytes() == b"old"
    if isinstance(failure, OSError):                # the path as given, not the temporary file
        assert (caught.value.filename, caught.value.strerror) == (str(tmp_path / "keep.json"),
                                                                  "No space left on device")


def test_a_missing_folder_is_named_by_the_path_as_given(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write(tmp_path / "nope" / "x.json", b"{}")
    assert caught.value.filename == str(tmp_path / "nope" / "x.json")


def test_the_next_write_removes_temporaries_of_ended_processes_only(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    host = socket.gethostname().replace(".", "-")
    stale = tmp_path / f".x.json.{host}.{ended.stdout.strip()}.0badf00d.tmp"
    running = tmp_path / f".x.json.{host}.{os.getpid()}.0badf00d.tmp"
    elsewhere = tmp_path / f".x.json.other-host.{ended.stdout.strip()}.0badf00d.tmp"
    other_file = tmp_path / f".x.json.y.{host}.{ended.stdout.strip()}.0badf00d.tmp"
    for path in (stale, running, elsewhere, other_file):
        path.write_bytes(b"half")
    atomic_write(tmp_path / "x.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["x.json", running.name, elsewhere.name, other_file.name])


def test_a_device_or_pipe_is_written_in_place_not_replaced(tmp_path):
    """`--json /dev/stdout` must not rename a file over the device (root may write /dev)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    atomic_write(fifo, b"{", b"}")
    reader.join(timeout=10)
    assert received == [b"{}"] and stat.S_ISFIFO(fifo.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_a_link_is_written_through_and_kept(tmp_path):
    """`/dev/stdout` is a link: renaming over it would replace the link with a file."""
    (tmp_path / "target.json").write_bytes(b"old")
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    atomic_write(tmp_path / "link.json", b"new")
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "target.json").read_bytes() == b"new"
