"""Monitoring: the Prometheus endpoint and the gauges it reads from the database."""
