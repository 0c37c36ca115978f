"""Turn a client's virtual path into a real path inside a home, refusing every escape.

Written by hand because the rules are ours: pyftpdlib's own validpath only checks the
prefix after realpath, and we also refuse NUL, control and bidi characters, overlong names
and our hidden folders before touching the disk.
"""

from __future__ import annotations

import os
import posixpath
import unicodedata
from pathlib import Path

from mft.errors import InvalidInput, PermissionDenied

MAX_PATH = 1024
MAX_NAME = 255
_HIDDEN = {".portside-tmp"}
# Bidirectional overrides and isolates can disguise a name's extension (report.exe shown
# as report.txt): refuse them, with every other control character.
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
         "\u2069", "\u200e", "\u200f"}


def normalize(virtual: str, cwd: str = "/") -> str:
    """Return the normalized absolute virtual path ("/a/b"), refusing bad names."""
    if "\x00" in virtual:
        raise InvalidInput("path contains a NUL byte")
    if len(virtual.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise InvalidInput("path too long")
    if any(unicodedata.category(c) in ("Cc", "Cs") or c in _BIDI for c in virtual):
        raise InvalidInput("path contains control or direction-override characters")
    joined = virtual if virtual.startswith("/") else posixpath.join(cwd, virtual)
    # normpath collapses ".." against the virtual root, so "/../../etc" becomes "/etc",
    # which then maps inside the home: nothing climbs above it.
    clean = posixpath.normpath("/" + joined.lstrip("/"))
    clean = "/" if clean in ("//", "/.") else clean.replace("//", "/")
    parts = [p for p in clean.split("/") if p]
    for part in parts:
        if len(part.encode()) > MAX_NAME:
            raise InvalidInput("file name too long")
        if part in _HIDDEN:
            raise PermissionDenied("no such file or folder")
        if unicodedata.normalize("NFC", part) != part:
            raise InvalidInput("path is not in Unicode normal form C")
    return "/" + "/".join(parts)


def to_real(home: Path, virtual: str) -> Path:
    """Return the real path for a normalized virtual path, refusing symlinks out of home."""
    root = Path(os.path.realpath(home))
    real = Path(os.path.realpath(root / virtual.lstrip("/")))
    if real != root and root not in real.parents:
        raise PermissionDenied("path leaves the home folder")
    return real


def to_virtual(home: Path, real: Path) -> str:
    """Return the virtual path of a real path inside home."""
    root = Path(os.path.realpath(home))
    relative = Path(os.path.realpath(real)).relative_to(root)
    return "/" + relative.as_posix() if str(relative) != "." else "/"
