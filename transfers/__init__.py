"""Stored files, storage, the processing pipeline and partner deliveries."""
