"""Per-partner retention of stored files and delivery records."""
