"""gunicorn reads this from the working directory: log in the platform's format."""

logger_class = "mft.gunicorn_logging.PlatformLogger"
