"""The pyftpdlib authorizer: permission words from the data model, mapped to its letters.

Authentication itself never happens here: the handler sends USER/PASS to
accounts.services.login() on a worker thread. This class only answers the questions
pyftpdlib asks after login.
"""

from __future__ import annotations

from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed

# pyftpdlib letters: e=CWD l=LIST r=RETR a=APPE d=DELE f=RNFR/RNTO m=MKD w=STOR
# M=SITE CHMOD T=MFMT. Each letter needs the words listed (any one of them).
_LETTERS: dict[str, tuple[str, ...]] = {
    "e": ("list",),
    "l": ("list",),
    "r": ("download",),
    "a": ("upload",),
    "w": ("upload",),
    "d": ("delete",),
    "f": ("rename",),
    "m": ("mkdir",),
    "T": ("upload",),
}


def letters_for(words: list[str]) -> str:
    """Return pyftpdlib's permission letters for a list of permission words."""
    held = set(words)
    return "".join(letter for letter, need in _LETTERS.items() if held.intersection(need))


class SessionAuthorizer:
    """Answer pyftpdlib's permission questions for the one user logged in on a session."""

    def __init__(self) -> None:
        self._perms: dict[str, str] = {}

    def bind(self, username: str, words: list[str]) -> None:
        """Remember the permissions of a user who just logged in."""
        self._perms[username] = letters_for(words)

    def forget(self, username: str) -> None:
        """Drop a user's permissions when they log out."""
        self._perms.pop(username, None)

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        """Refuse: logins go through the handler's deferred call to accounts.services."""
        raise AuthenticationFailed("Login incorrect.")

    def has_user(self, username: str) -> bool:
        return username in self._perms

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm in self._perms.get(username, "")

    def get_perms(self, username: str) -> str:
        return self._perms.get(username, "")

    def get_home_dir(self, username: str) -> str:
        raise AuthenticationFailed("Login incorrect.")

    def get_msg_login(self, username: str) -> str:
        return "Login successful."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        """Do nothing: every session runs as the gateway's own OS user."""

    def terminate_impersonation(self, username: str) -> None:
        """Do nothing (see impersonate_user)."""
