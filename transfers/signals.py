"""Signals other apps connect to, instead of the pipeline importing them.

Sent after the transaction that changed the file commits, so receivers (deliveries,
notifications, webhooks) always see the committed state.
"""

from django.dispatch import Signal

# Sent with `stored_file` when a file becomes ready for everyone downstream.
file_ready = Signal()
# Sent with `stored_file` when a file is found infected and quarantined.
file_quarantined = Signal()
# Sent with `stored_file` and `reason` when a file is held or rejected.
file_stopped = Signal()
# Sent after the master key was rotated: apps holding secrets sealed under it re-seal them.
master_key_rotated = Signal()
