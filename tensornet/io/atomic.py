"""Crash-safe file replacement.

``atomic_write(path, data)`` writes to a hidden temporary file in the same folder
(``.<name>.XXXXXXXX.tmp``), fsyncs it and renames it over ``path``, so ``path`` always
holds either the previous file or the complete new one. Besides that:

- a save killed mid-write (``kill -9``, power loss) leaves its temporary file behind; the
  next save to the same ``path`` removes such leftovers. Each writer holds an exclusive
  ``flock`` on its temporary file until the rename, and the kernel drops the lock when the
  process dies, so a leftover is told from a save still running by trying the lock;
- the new file keeps the permission bits of the file it replaces (a 0600 checkpoint stays
  0600); a new file gets the usual ``0666 & ~umask``;
- any OS failure (no space, read-only folder, file-size limit, no permission) raises
  ``CheckpointError`` naming the file, after removing the temporary file; the previous
  file is untouched;
- a ``path`` that is a device, a pipe or a socket (or a link to one) is refused: the rename
  would replace ``/dev/null`` itself by a regular file.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import CheckpointError

try:
    import fcntl
except ImportError:  # Windows: no flock, so no telling a crashed save from a running one
    fcntl = None

TEMP_SUFFIX = ".tmp"
_TEMP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")  # tempfile's alphabet
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    getattr(errno, "EDQUOT", errno.ENOSPC): "no space left (disk quota or device full)",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.EFBIG: "the file would exceed the file-size limit (ulimit -f)",
}


def _write_all(f, data: bytes) -> None:
    f.write(data)


def atomic_write(path: Path, data: bytes, what: str = "the checkpoint") -> None:
    """Replace ``path`` by a file holding ``data``, all or nothing (``what`` names the file
    in the error)."""
    folder = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        kind = os.stat(path).st_mode if os.path.lexists(path) else None
    except OSError:  # a dangling link: the rename replaces the link
        kind = None
    if kind is not None and not stat.S_ISREG(kind) and not stat.S_ISDIR(kind):
        # the rename would put a regular file in place of /dev/null, a pipe or a socket
        raise CheckpointError(f"{path}: cannot save {what} there: not a regular file (a "
                              f"device, pipe or socket)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path)
        mode = _mode_for(path)
        fd, tmp = _locked_temp_file(folder, path.name)
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, mode)
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)   # still holding the lock: no cleaner can take it
        tmp = None
    except OSError as exc:
        reason = _REASONS.get(exc.errno, exc.strerror or str(exc))
        raise CheckpointError(f"{path}: cannot save {what}: {reason} ({len(data)} "
                              f"bytes to write; {exc}); the previous file, if any, is "
                              f"unchanged") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync_folder(folder)


def remove_stale_temp_files(path: Path) -> list[str]:
    """Remove the temporary files that crashed saves to ``path`` left; returns their names."""
    if fcntl is None:
        return []
    folder = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    removed = []
    for entry in os.scandir(folder):
        middle = entry.name[len(prefix):-len(TEMP_SUFFIX)]
        if not (entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX)
                and len(middle) == 8 and set(middle) <= _TEMP_CHARS
                and entry.is_file(follow_symlinks=False)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(fd), os.stat(entry.path, follow_symlinks=False)):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:  # locked: a save in progress owns it (or it vanished meanwhile)
            pass
        finally:
            os.close(fd)
    return removed


def _locked_temp_file(folder: Path, name: str) -> tuple[int, str]:
    for _ in range(100):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=folder)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Another save's cleanup may have taken this brand-new, not yet locked file for a
        # leftover and removed it: then start again with a fresh one.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp, follow_symlinks=False)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(errno.EEXIST, "could not create a temporary file")


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every OS can fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
