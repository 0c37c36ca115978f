"""Notifications: one service for every alert (email, signed webhooks, daily digests) and
the event feed internal systems read."""
