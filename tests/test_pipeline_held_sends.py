"""Service level: an upload finished inside pipeline.held_sends() keeps its run message for
the caller (the gateway sends it after its 226); outside, nothing is kept back."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.events import SYSTEM
from transfers import pipeline
from transfers.models import PipelineStep
from transfers.uploads import begin_upload

pytestmark = pytest.mark.django_db(transaction=True)


def _finish(partner, name: str):
    upload = begin_upload(partner.user, name, origin=SYSTEM)
    upload.write(b"held,\n")
    return upload.finish()


def test_upload_finished_inside_held_sends_keeps_its_run_message(partner):
    with pipeline.held_sends() as held:
        stored = _finish(partner, "/held.csv")
    assert held == [stored.pk]
    assert list(stored.steps.values_list("name", flat=True).order_by("id")) == list(
        pipeline.STEPS)


def test_message_is_kept_only_once_its_transaction_commits(partner):
    with pipeline.held_sends() as held:
        with pytest.raises(RuntimeError), transaction.atomic():
            _finish(partner, "/rolled-back.csv")
            raise RuntimeError("the caller failed after the upload")
        assert held == []
        stored = _finish(partner, "/kept.csv")
    assert held == [stored.pk]
    assert PipelineStep.objects.filter(stored_file__path="/rolled-back.csv").count() == 0


def test_outside_held_sends_nothing_is_kept_back(partner):
    with pipeline.held_sends() as held:
        pass
    _finish(partner, "/sent.csv")
    assert held == []
