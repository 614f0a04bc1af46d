"""Putting a finished project folder in place without losing anything a user saved.

A converter (``to_hls4ml``, ``to_rtl``) writes its project into a staging
folder beside the target (:func:`hgq_fpga.files.make_staging`) and then calls
:func:`publish_project`:

* without ``overwrite`` the move never replaces anything: Linux
  ``renameat2(RENAME_NOREPLACE)`` fails if a file or folder appeared at the
  target since :func:`check_project_target` (elsewhere a last check precedes a
  plain rename);
* with ``overwrite`` an existing project is swapped with the new one in one
  ``renameat2(RENAME_EXCHANGE)`` -- the target is at every instant the
  complete old project or the complete new one -- and what was swapped out is
  deleted only if it is a project of the same kind (its marker file); anything
  else is swapped back and the conversion refused.

Written once for both converters (rather than taken from a library: no
package we depend on exposes ``renameat2``; Python's ``os.rename`` replaces
silently).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProjectKind", "check_project_target", "exchange", "is_project", "publish_project"]


@dataclass(frozen=True)
class ProjectKind:
    """What ``overwrite=True`` may replace.

    Attributes:
        what: the converter, for messages (``"to_rtl"``).
        marker: a file every such project has at its top (``"hls4ml_config.yml"``).
        noun: the project in words (``"an RTL project"``).
    """

    what: str
    marker: str
    noun: str


def is_project(d: Path, kind: ProjectKind) -> bool:
    """A real folder (not a link) that is empty or carries ``kind.marker``."""
    return d.is_dir() and not d.is_symlink() and (not any(d.iterdir()) or (d / kind.marker).is_file())


def check_project_target(target: Path, overwrite: bool, kind: ProjectKind) -> None:
    """Refuse an existing ``target`` unless ``overwrite``; never replace anything but a project.

    Raises:
        FileExistsError: naming the path, why, and what to do.
    """
    if not target.exists() and not target.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(
            f"{kind.what}: {target} already exists. Choose another output_dir or pass overwrite=True "
            "(the existing project is then replaced only once the new one is complete)."
        )
    if target.is_symlink() or not target.is_dir():
        raise FileExistsError(
            f"{kind.what}: {target} exists and is not a folder (a file or a link); overwrite=True only "
            f"replaces {kind.noun} folder. Remove it yourself or choose another output_dir."
        )
    if not is_project(target, kind):
        raise FileExistsError(
            f"{kind.what}: {target} is a non-empty folder without {kind.marker}, so it is not {kind.noun}; "
            "overwrite=True never replaces other folders (nothing a user saved is deleted). Choose "
            "another output_dir or empty that folder yourself."
        )


def _renameat2(a: Path, b: Path, flags: int) -> bool | None:
    """Linux ``renameat2``: True when done, False when ``b`` exists (``RENAME_NOREPLACE``) or the
    exchange failed, None where the system has no renameat2."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc older than 2.28, or another libc
        return None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), flags) == 0:
        return True
    if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL):  # the file system cannot do it
        return None
    return False


def exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (``RENAME_EXCHANGE``); False where unavailable."""
    return bool(_renameat2(a, b, 2))


def publish_project(staging: Path, target: Path, overwrite: bool, kind: ProjectKind) -> None:
    """Move the finished project ``staging`` to ``target`` (see the module docstring).

    Raises:
        FileExistsError: something appeared at ``target`` meanwhile (without
            ``overwrite``), or it became a folder that is not a project.
    """
    if not os.path.lexists(target) or not overwrite:
        done = _renameat2(staging, target, 1)  # RENAME_NOREPLACE
        if done is None and not os.path.lexists(target):
            staging.rename(target)
            return
        if done:
            return
        if not overwrite:
            raise FileExistsError(
                f"{kind.what}: {target} appeared while the project was being written; it was left as it is. "
                "Choose another output_dir, or pass overwrite=True to replace a project."
            )
    if exchange(staging, target):
        if not is_project(staging, kind):  # a user's folder took the project's place meanwhile: put it back
            exchange(staging, target)
            raise FileExistsError(f"{kind.what}: {target} became a folder that is not {kind.noun} while "
                                  "the project was being written; it was left as it is.")
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old project
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
