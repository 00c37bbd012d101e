"""File helpers shared by the stages: output paths checked before any work (a file where a folder is wanted,
or the reverse, or a parent that cannot be written, is one error line before the store or any output is
touched), and a file's content digest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import MijaError


def check_output(path: str | Path, *, folder: bool, what: str = "--out") -> Path:
    """``path`` itself when it can be written as a folder (``folder``) or a file, else a MijaError."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise MijaError(f"{what} {path}: is a file; give a folder")
        if not folder and path.is_dir():
            raise MijaError(f"{what} {path}: is a folder; give a file name")
        target = path if folder else path.parent
        if not os.access(target, os.W_OK):
            raise MijaError(f"{what} {path}: cannot write in {target} (permission denied)")
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise MijaError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MijaError(f"{what} {path}: cannot write in {parent} (permission denied)")
    return path


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks (model files run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
