"""Signals other apps connect to, instead of the pipeline importing them.

Sent inside the transaction that records the file's new state (transfers.pipeline), each
receiver in a savepoint: what receivers write (deliveries, the notification feed) commits
with that state or not at all. Receivers must not talk to the outside world directly: they
send their messages with transaction.on_commit, so nothing goes out for a state that rolls
back.
"""

from django.dispatch import Signal

# Sent with `stored_file` just before the transaction that records the file ready, outside
# it: a receiver reads there what it needs (routes, subscriptions, expectations) and
# returns a function of the stored file that makes its writes, or None when it has nothing
# to write. The pipeline calls those functions inside the recording transaction, each in a
# savepoint, before sending file_ready. On SQLite that transaction holds the database's only
# write lock, which the gateway's next upload waits for: reads belong before it. What a
# receiver read may have changed by then, as it may a moment after the commit (a route
# enabled meanwhile is caught up by routing's sweeper).
plan_file_ready = Signal()
# Sent with `stored_file` when a file becomes ready for everyone downstream.
file_ready = Signal()
# Sent with `stored_file` when a file is found infected and quarantined.
file_quarantined = Signal()
# Sent with `stored_file` and `reason` when a file is held or rejected.
file_stopped = Signal()
# Sent after the master key was rotated: apps holding secrets sealed under it re-seal them.
master_key_rotated = Signal()
