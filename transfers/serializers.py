"""API representations of stored files and of admin decisions on them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from transfers.models import StoredFile


class StoredFileSerializer(serializers.ModelSerializer[StoredFile]):
    """A stored file's metadata: where it is in the pipeline, its SHA-256, its scan result."""

    class Meta:
        model = StoredFile
        fields = ["id", "owner", "owner_username", "partner", "path", "size", "sha256",
                  "state", "state_reason", "scan_signature", "scan_engine", "protocol",
                  "created_at", "received_at", "state_changed_at", "ready_at"]
        read_only_fields = fields


class ReviewDecisionSerializer(serializers.Serializer[Any]):
    """Why an admin releases or deletes a file the pipeline stopped."""

    reason = serializers.CharField(max_length=300)
