"""Announce expiring certificates and keys and new posture findings, once each."""
