"""The audit spool rolls over: a long-lived process does not keep one file forever.

Once its file is past the roll-over size and a drain reached the database, appends move to
a fresh file and the old one goes when its last lines are in the chain; never before,
never with the database down, never losing or doubling an event, whether appends race the
switch or the process is killed around it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings

from audit import chain, spool
from audit.events import Origin
from audit.models import AuditEvent
from tests.live_worker import ROOT, current_database_url
from tests.test_gateway_audit_spool import chain_blocked
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)

ROLL = 4096  # the smallest MFT_AUDIT_SPOOL_ROLL_BYTES allowed
ORIGIN = Origin(source_ip="192.0.2.77", protocol="ftps", extra={"session": "roll"})


def _fill(owner: spool.AuditSpool, size: int = ROLL) -> list[str]:
    """Append session events until the current file reaches size; return their spool ids."""
    ids: list[str] = []
    while True:
        try:
            if owner.path.stat().st_size >= size:
                return ids
        except FileNotFoundError:
            return ids  # rolled over under us by a drainer: it was past the size
        ids.append(owner.append("session", origin=ORIGIN, action="connect",
                                details={"n": len(ids)}))


def _spool_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{spool.SUFFIX}"))


def _until_rolled_over_from(owner: spool.AuditSpool, old: Path, timeout: float) -> None:
    """Wait until appends go to a newer file than old and old is removed."""
    until(lambda: owner.path != old and not old.exists(), timeout=timeout,
          what=f"the roll-over from {old.name}")


def _assert_each_in_chain_once(ids: list[str]) -> None:
    """Every spool id is in the chain exactly once, nothing else of ours is, and the chain
    verifies."""
    written = Counter(AuditEvent.objects.filter(source_ip=ORIGIN.source_ip)
                      .values_list("details__spool_id", flat=True))
    assert written == Counter(ids), (len(written), len(ids))
    assert chain.verify()[1] is None


# --- when it rolls ---------------------------------------------------------------------

def test_drainer_rolls_the_spool_over_past_the_threshold(tmp_path):
    owner = spool.AuditSpool(tmp_path, roll_bytes=ROLL)
    drainer = spool.Drainer(owner)
    drainer.start()
    first = owner.path
    try:
        ids = _fill(owner, ROLL // 2)
        until(owner.drained, timeout=30, what="the spool drained")
        threading.Event().wait(1.5)  # a drainer cycle or more: below the size, no roll-over
        assert owner.path == first and _spool_files(tmp_path) == [first]
        ids += _fill(owner)
        _until_rolled_over_from(owner, first, timeout=30)
        assert _spool_files(tmp_path) == [owner.path] and owner.path.stat().st_size == 0
        assert not spool._offset_path(first).exists()
        ids.append(owner.append("session", origin=ORIGIN, action="disconnect"))
        until(owner.drained, timeout=30, what="the new file drained")
    finally:
        drainer.close(timeout=30)
    assert not os.listdir(tmp_path)
    _assert_each_in_chain_once(ids)


def test_spool_does_not_roll_over_below_the_threshold(tmp_path):
    owner = spool.AuditSpool(tmp_path, roll_bytes=ROLL)
    try:
        ids = _fill(owner, ROLL // 2)
        spool.drain(owner.path)
        assert owner.drained() and not owner.roll()
        assert _spool_files(tmp_path) == [owner.path]
        assert owner.path.stat().st_size < ROLL
    finally:
        owner.close()
    _assert_each_in_chain_once(ids)


def test_rolled_over_file_is_removed_only_once_its_last_lines_are_in_the_chain(tmp_path):
    owner = spool.AuditSpool(tmp_path, roll_bytes=ROLL)
    try:
        first = owner.path
        ids = _fill(owner)
        assert owner.roll() and owner.retired == first
        assert not owner.roll(), "one retired file at a time"
        new = owner.path
        assert _spool_files(tmp_path) == sorted([first, new]) and new.stat().st_size == 0
        ids.append(owner.append("session", origin=ORIGIN, action="after"))
        assert first.stat().st_size >= ROLL and not owner.drained()
        assert owner.finish_roll() == len(ids) - 1
        assert _spool_files(tmp_path) == [new] and not spool._offset_path(first).exists()
        assert spool.drain(new) == 1 and owner.drained()
    finally:
        owner.close()
    assert not os.listdir(tmp_path)
    _assert_each_in_chain_once(ids)


def test_undrained_rolled_over_file_is_left_for_replay(tmp_path):
    owner = spool.AuditSpool(tmp_path, roll_bytes=ROLL)
    first = owner.path
    ids = _fill(owner)
    assert owner.roll()
    ids.append(owner.append("session", origin=ORIGIN, action="after"))
    owner.close()  # the database never answered: both files stay
    assert _spool_files(tmp_path) == sorted([first, owner.path])
    assert spool.replay(tmp_path) == len(ids)
    assert not os.listdir(tmp_path)
    _assert_each_in_chain_once(ids)
    in_chain_order = list(AuditEvent.objects.filter(source_ip=ORIGIN.source_ip)
                          .order_by("id").values_list("details__spool_id", flat=True))
    assert in_chain_order == ids, "the old file's events come first"


def test_drainer_does_not_roll_over_while_the_chain_cannot_be_written(tmp_path):
    owner = spool.AuditSpool(tmp_path, roll_bytes=ROLL)
    drainer = spool.Drainer(owner)
    first = owner.path
    try:
        with chain_blocked():
            drainer.start()
            ids = _fill(owner, 2 * ROLL)
            # The drainer tries (and backs off) for a while; the file must stay whole.
            threading.Event().wait(2.0)
            assert _spool_files(tmp_path) == [first] and owner.retired is None
            assert first.stat().st_size >= 2 * ROLL > spool._read_offset(first)
        _until_rolled_over_from(owner, first, timeout=60)  # once drained
    finally:
        drainer.close(timeout=30)
    assert not os.listdir(tmp_path)
    _assert_each_in_chain_once(ids)


# --- appends racing the switch ------------------------------------------------------------

def test_events_appended_while_rolling_reach_the_chain_exactly_once(tmp_path):
    owner = spool.AuditSpool(tmp_path, roll_bytes=ROLL)
    drainer = spool.Drainer(owner)
    ids: list[str] = []
    stop = threading.Event()

    def pool_appends() -> None:
        """Append all along, as a steady stream of sessions does (every tenth durably, as
        logins are): the drainer seldom finds the file still, and must roll over anyway."""
        n = 0
        while not stop.wait(0.004):
            ids.append(owner.append("session", origin=ORIGIN, action="pool",
                                    durable=n % 10 == 0, details={"n": n}))
            n += 1

    pool = threading.Thread(target=pool_appends, name="pool-appends")
    drainer.start()
    pool.start()
    try:
        for _ in range(10):
            current = owner.path
            ids.extend(_fill(owner))  # the loop's burst, past the roll-over size
            _until_rolled_over_from(owner, current, timeout=30)
    finally:
        stop.set()
        pool.join(30)
        until(owner.drained, timeout=60, what="the spool drained")
        drainer.close(timeout=30)
    assert not pool.is_alive() and not os.listdir(tmp_path)
    assert len(ids) > 100
    _assert_each_in_chain_once(ids)


# --- a process killed around the switch ---------------------------------------------------

CHILD = """
import json, sys, threading, django
django.setup()
from pathlib import Path
from audit import spool
from audit.events import Origin

origin = Origin(source_ip="192.0.2.77", protocol="ftps", extra={"session": "roll"})
owner = spool.AuditSpool(Path(sys.argv[1]), roll_bytes=int(sys.argv[2]))
first, before, after = owner.path, [], []
while owner.path.stat().st_size < owner.roll_bytes:
    before.append(owner.append("session", origin=origin, action="connect"))
spool.drain(owner.path)
late = [owner.append("session", origin=origin, action="late") for _ in range(3)]

def die_here(*args):
    after.extend(owner.append("session", origin=origin, action="tls", durable=n == 0)
                 for n in range(5))
    print(json.dumps({"before": before, "late": late, "after": after, "old": str(first),
                      "new": str(owner.path)}), flush=True)
    threading.Event().wait(600)

if sys.argv[3] == "before_removal":
    spool._remove = die_here  # the retired file's lines are in the chain by then
assert owner.roll()
if sys.argv[3] == "after_switch":
    die_here()
owner.finish_roll()
die_here()
"""


def _killed_child(folder: Path, when: str) -> dict[str, object]:
    """Run a process that rolls its spool over and is SIGKILLed at the point named by
    when; return what it appended and its file names."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": current_database_url(),
           "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
           "MFT_DATA_DIR": str(settings.DATA_DIR)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(ROLL), when],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.communicate(timeout=30)[1].decode()
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        child.communicate()
    return dict(json.loads(line))


@pytest.mark.parametrize("when", ["after_switch", "before_removal", "after_roll"])
def test_files_left_by_a_process_killed_around_the_switch_replay_exactly_once(tmp_path, when):
    left = _killed_child(tmp_path, when)
    old, new = Path(str(left["old"])), Path(str(left["new"]))
    before, late, after = ([str(i) for i in left[key]]  # type: ignore[attr-defined]
                           for key in ("before", "late", "after"))
    assert _spool_files(tmp_path) == ([new] if when == "after_roll" else [old, new])
    in_chain = before if when == "after_switch" else before + late
    _assert_each_in_chain_once(in_chain)

    assert spool.replay(tmp_path) == len(before) + len(late) + len(after) - len(in_chain)
    assert not os.listdir(tmp_path), "replay leaves no spool or offset file"
    _assert_each_in_chain_once(before + late + after)
