"""API shapes of the event feed (schema only: events are rendered by services.payload)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class EventPartnerSerializer(serializers.Serializer[Any]):
    """The partner an event concerns."""

    id = serializers.IntegerField()
    name = serializers.CharField()


class EventSerializer(serializers.Serializer[Any]):
    """One event, exactly as webhooks send it."""

    id = serializers.CharField(help_text="the event's id: the cursor that follows it")
    event = serializers.CharField(help_text="file.ready, file.quarantined, delivery.succeeded…")
    created_at = serializers.DateTimeField()
    partner = EventPartnerSerializer(allow_null=True)
    subject = serializers.CharField()
    # The wire name is `data`, which shadows Serializer.data; this class only documents it.
    data = serializers.DictField(help_text="the event's details (file, delivery…)")  # type: ignore[assignment]


class EventPageSerializer(serializers.Serializer[Any]):
    """Events after a cursor, and the cursor to ask with next."""

    events = EventSerializer(many=True)
    next_cursor = serializers.CharField(help_text="pass as `cursor` to read what follows")
    has_more = serializers.BooleanField(help_text="true when more events are already waiting")
