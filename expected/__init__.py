"""Files partners are expected to deliver by a deadline, and the alerts when they do not."""
