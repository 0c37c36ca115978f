"""gunicorn's logger, writing through the platform's handler and format (`mft.logs`).

gunicorn gives its own loggers private handlers with their own format; in JSON mode those
lines would be the only ones that are not JSON. This class hands them to the root logger
configured from settings.LOGGING instead. `gunicorn.conf.py` names it.
"""

from __future__ import annotations

import logging
import logging.config
import os
from typing import Any

from gunicorn import glogging


class PlatformLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's error and access logs in the platform's format, with the request id."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mft.settings")
        from django.conf import settings

        logging.config.dictConfig(settings.LOGGING)
        for log in (self.error_log, self.access_log):
            for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                log.removeHandler(handler)
            log.propagate = True
