"""Saving under adverse conditions: killed saves, concurrent saves, permission bits, full
disks, read-only folders, file-size limits. The previous file always survives intact and
nothing half-written is left behind."""
from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

import tensornet as tn
from tensornet.io import atomic


def _temp_files(folder, name="ckpt.safetensors"):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_kill_9_leftover_is_removed_by_the_next_save(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    code = (
        "import os, signal, numpy as np, tensornet as tn\n"
        "from tensornet.io import atomic\n"
        "def half_then_die(f, data):\n"
        "    f.write(data[: len(data) // 2]); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic._write_all = half_then_die\n"
        f"tn.save({{'w': np.zeros(100_000, np.float32)}}, {str(path)!r})\n")
    leftovers = []
    for _ in range(2):   # the second killed save already removes the first one's leftover
        proc = subprocess.run([sys.executable, "-c", code], timeout=120)
        assert proc.returncode == -signal.SIGKILL
        leftovers.append(_temp_files(tmp_path))
    assert len(leftovers[0]) == len(leftovers[1]) == 1 and leftovers[0] != leftovers[1]
    assert (tmp_path / leftovers[1][0]).stat().st_size > 0 and not path.exists()
    other = tmp_path / ".other.safetensors.abcd1234.tmp"     # another target's: not ours
    notes = tmp_path / ".ckpt.safetensors.notes"               # not a temp file name
    other.write_bytes(b"x")
    notes.write_bytes(b"x")
    tn.save({"w": np.ones(3, np.float32)}, path)
    assert _temp_files(tmp_path) == [notes.name] and other.exists()
    np.testing.assert_array_equal(tn.load(path)["w"], np.ones(3))


def test_a_save_in_progress_keeps_its_temp_file(tmp_path, monkeypatch):
    """The leftover clean-up must tell a crashed save from one still writing."""
    path = tmp_path / "ckpt.safetensors"
    started, release, errors = threading.Event(), threading.Event(), []
    real_write = atomic._write_all

    def slow_in_worker(f, data):
        if threading.current_thread() is worker:
            f.write(data[:10])
            started.set()
            assert release.wait(30)
            data = data[10:]
        real_write(f, data)

    def save_ones():
        try:
            tn.save({"w": np.ones(1000, np.float32)}, path)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    monkeypatch.setattr(atomic, "_write_all", slow_in_worker)
    worker = threading.Thread(target=save_ones)
    worker.start()
    assert started.wait(30)
    in_progress = _temp_files(tmp_path)
    tn.save({"w": np.zeros(1000, np.float32)}, path)   # cleans up, but not the live file
    assert len(in_progress) == 1 and _temp_files(tmp_path) == in_progress
    release.set()
    worker.join(30)
    assert not errors and _temp_files(tmp_path) == []
    np.testing.assert_array_equal(tn.load(path)["w"], np.ones(1000))


def test_permission_bits_of_the_replaced_file_are_kept(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tn.save({"w": np.ones(3, np.float32)}, path)
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    for mode in (0o600, 0o640, 0o444):
        os.chmod(path, mode)
        tn.save({"w": np.zeros(3, np.float32)}, path)
        assert stat.S_IMODE(path.stat().st_mode) == mode


def _assert_untouched(tmp_path, path, before):
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]   # no partial or temp file


@pytest.fixture
def previous(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tn.save({"w": np.ones(100, np.float32)}, path)
    return path, path.read_bytes()


def test_disk_full(tmp_path, monkeypatch, previous):
    path, before = previous

    def half_then_full(f, data):
        f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", half_then_full)
    with pytest.raises(tn.CheckpointError, match=rf"{path}: cannot save .*no space left"):
        tn.save({"w": np.zeros(100_000, np.float32)}, path)
    _assert_untouched(tmp_path, path, before)


def test_read_only_folder(tmp_path, monkeypatch, previous):
    path, before = previous
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse as a read-only fs
        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
        needle = "read-only file system"
    else:
        os.chmod(tmp_path, 0o500)
        needle = "no permission"
    try:
        with pytest.raises(tn.CheckpointError, match=rf"{path}: cannot save .*{needle}"):
            tn.save({"w": np.zeros(100, np.float32)}, path)
    finally:
        os.chmod(tmp_path, 0o700)
    _assert_untouched(tmp_path, path, before)


def test_file_size_limit(tmp_path, previous):
    path, before = previous
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN   # Python ignores it: EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(tn.CheckpointError, match=rf"{path}: cannot save .*file-size limit"):
            tn.save({"w": np.zeros(100_000, np.float32)}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    _assert_untouched(tmp_path, path, before)


def test_a_folder_that_cannot_exist(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(tn.CheckpointError, match=r"file/sub/c.safetensors: cannot save"):
        tn.save({"w": np.ones(1)}, tmp_path / "file" / "sub" / "c.safetensors")


@pytest.mark.parametrize("via_link", [False, True], ids=["pipe", "link-to-pipe"])
def test_a_device_or_pipe_is_not_replaced(tmp_path, via_link):
    """The rename put a regular file in place of the target: `tn.save(..., "/dev/null")`
    or `tensornet export --out /dev/full` run as root replaced the device node itself.
    A FIFO stands in for the device here."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    target = pipe
    if via_link:
        target = tmp_path / "link.safetensors"
        target.symlink_to(pipe)
    with pytest.raises(tn.CheckpointError, match=rf"{target}: cannot save the checkpoint "
                                                 r"there: not a regular file"):
        tn.save({"w": np.ones(1)}, target)
    assert stat.S_ISFIFO(os.stat(target).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"pipe", target.name})
