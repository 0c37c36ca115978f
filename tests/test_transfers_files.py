"""Service level: folder and rename rules of transfers.files, the same for every edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.events import SYSTEM
from mft.errors import InvalidInput, NotFound
from transfers import files

pytestmark = pytest.mark.django_db(transaction=True)


def test_make_dir_refuses_a_missing_parent(cast):
    with pytest.raises(NotFound, match="folder /missing does not exist"):
        files.make_dir(cast.partner.user, "/missing/inbox", origin=SYSTEM)
    assert not (Path(cast.partner.user.home_dir) / "missing").exists()


def test_rename_refuses_a_missing_target_folder(cast):
    files.make_dir(cast.partner.user, "/inbox", origin=SYSTEM)
    with pytest.raises(NotFound, match="folder /missing does not exist"):
        files.rename(cast.partner.user, "/inbox", "/missing/inbox", origin=SYSTEM)
    assert (Path(cast.partner.user.home_dir) / "inbox").is_dir()


def test_rename_refuses_moving_a_folder_into_itself(cast):
    files.make_dir(cast.partner.user, "/inbox", origin=SYSTEM)
    with pytest.raises(InvalidInput, match="into itself"):
        files.rename(cast.partner.user, "/inbox", "/inbox/sub", origin=SYSTEM)


def test_rename_to_a_sibling_with_a_common_prefix_is_allowed(cast):
    files.make_dir(cast.partner.user, "/inbox", origin=SYSTEM)
    files.rename(cast.partner.user, "/inbox", "/inbox-old", origin=SYSTEM)
    assert (Path(cast.partner.user.home_dir) / "inbox-old").is_dir()
