"""Signals other apps connect to, instead of the pipeline importing them.

Sent inside the transaction that records the file's new state (transfers.pipeline), each
receiver in a savepoint: what receivers write (deliveries, the notification feed) commits
with that state or not at all. Receivers must not talk to the outside world directly: they
send their messages with transaction.on_commit, so nothing goes out for a state that rolls
back.
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
