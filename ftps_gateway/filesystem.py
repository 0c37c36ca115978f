"""pyftpdlib's filesystem view of a user's home, through transfers.paths and storage.

Paths pass through transfers.paths (chroot, NUL, odd unicode, hidden folders); sizes are
plaintext sizes whatever is on disk; our hidden upload folder is never listed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pyftpdlib.filesystems import AbstractedFS, FilesystemError

from mft.errors import PortsideError
from transfers import files, paths, storage


class HomeFS(AbstractedFS):
    """A chrooted, encryption-aware view of one home folder."""

    def ftp2fs(self, ftppath: str) -> str:
        """Return the real path for a client path, refusing escapes."""
        try:
            virtual = paths.normalize(ftppath, self.cwd)
            return str(paths.to_real(self.root, virtual))
        except PortsideError as exc:
            raise FilesystemError(str(exc)) from None

    def fs2ftp(self, fspath: str) -> str:
        """Return the client path of a real path inside the home."""
        try:
            return paths.to_virtual(self.root, Path(fspath))
        except ValueError:
            return "/"

    def validpath(self, path: str) -> bool:
        """Return True when the real path lies inside the home."""
        root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)

    def open(self, filename: str, mode: str) -> Any:
        """Refuse: files are opened through transfers services by the handler."""
        raise FilesystemError("direct open is not available")

    def mkstemp(self, *args: Any, **kwargs: Any) -> Any:
        raise FilesystemError("STOU is not supported")

    def listdir(self, path: str) -> list[str]:
        """List a folder without Portside's hidden entries or links leading out of the home."""
        return [n for n in os.listdir(path)
                if n != storage.TEMP_DIRNAME and self.validpath(os.path.join(path, n))]

    def listdirinfo(self, path: str) -> list[str]:
        return self.listdir(path)

    def _with_plain_size(self, path: str, result: os.stat_result) -> os.stat_result:
        """Return a stat result whose size is the plaintext size."""
        if not os.path.isfile(path):
            return result
        fields = list(result)
        fields[6] = files.size_of(Path(path))
        return os.stat_result(fields)

    def stat(self, path: str) -> os.stat_result:
        return self._with_plain_size(path, os.stat(path))

    def lstat(self, path: str) -> os.stat_result:
        return self._with_plain_size(path, os.stat(path))

    def getsize(self, path: str) -> int:
        return files.size_of(Path(path))

    def readlink(self, path: str) -> str:
        raise FilesystemError("symbolic links are not shown")

    def islink(self, path: str) -> bool:
        return False

    def chmod(self, path: str, mode: int) -> None:
        raise FilesystemError("SITE CHMOD is not supported")

    def get_user_by_uid(self, uid: int) -> str:
        return "owner"

    def get_group_by_gid(self, gid: int) -> str:
        return "group"
