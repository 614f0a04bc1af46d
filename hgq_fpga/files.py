"""Writing an output file so that nothing a user saved is lost and nothing is
written outside the output folder.

:func:`write_file` writes the bytes into a fresh temporary file beside the
target (created with ``O_CREAT | O_EXCL``: it cannot be a link planted there
in advance), then moves it into place:

* without ``overwrite``, with :func:`os.link` (atomic, and it fails if
  anything, even a dangling link, appears at the target meanwhile: nothing
  is ever replaced);
* with ``overwrite``, with :func:`os.replace`, which replaces a link itself,
  never the file it points to; a folder at the target is refused.

An interruption leaves at most the hidden temporary file, which is removed on
the way out (``finally``) whenever Python still runs.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_file(d / "a.txt", b"hello")  # doctest: +ELLIPSIS
    PosixPath('...a.txt')
    >>> write_file(d / "a.txt", b"again")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileExistsError: ...a.txt exists; pass overwrite=True (--overwrite) to replace it (nothing was written)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["OWNER_FILE", "check_new_output", "make_staging", "plain_mode", "remove_stale", "write_file"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_mode(path: str | os.PathLike) -> None:
    """Give a file or folder the permissions a plain ``open``/``mkdir`` would (``0o666``/``0o777`` less the
    umask): ``tempfile`` makes them private (``0o600``/``0o700``), which would follow them into place."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


def check_new_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing target (a dangling link counts) unless ``overwrite``; never a folder.

    Raises:
        FileExistsError: naming the path and the flag that allows replacing it.
        IsADirectoryError: a folder is at the target.
    """
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        raise IsADirectoryError(f"{p} is a folder; give a file name (nothing was written)")
    if os.path.lexists(p) and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True (--overwrite) to replace it (nothing was written)")
    return p


def write_file(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically, never through a link (see the module docstring).

    Raises:
        FileExistsError: the target exists (or appeared meanwhile) and ``overwrite`` is False.
        IsADirectoryError: the target is a folder.
    """
    target = check_new_output(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        plain_mode(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target, follow_symlinks=False)
            except FileExistsError:
                raise FileExistsError(
                    f"{target} appeared while it was being written; it was left as it is (nothing was written)"
                ) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return target


#: the file inside a staging folder that names the process writing it
OWNER_FILE = ".hgq_fpga_owner"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def make_staging(parent: str | os.PathLike, prefix: str) -> Path:
    """A fresh hidden folder in ``parent`` for work in progress, marked with this process's id.

    A folder left behind by a process that was killed (SIGKILL: no handler runs)
    is removed by the next :func:`remove_stale` with the same prefix.
    """
    remove_stale(parent, prefix)
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    plain_mode(d)  # the folder is moved into place as the user's project
    (d / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return d


def remove_stale(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove the staging folders ``parent/prefix*`` whose owner process is gone; return them.

    Only folders carrying :data:`OWNER_FILE` with a dead process id are touched,
    never anything else whose name happens to match.
    """
    import shutil

    removed = []
    import glob

    for d in Path(parent).glob(f"{glob.escape(prefix)}*"):
        marker = d / OWNER_FILE
        if d.is_symlink() or not marker.is_file():
            continue
        try:
            pid = int(marker.read_text().strip())
        except ValueError:
            continue
        if not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
