"""The dashboard (``brief dashboard``): the report pages served on loopback.

``app``: the wiring (routes, the strict security headers, a plain error page); each
request reads the store afresh, so the numbers are those of the moment.
"""

from pipeline.web.dashboard.app import create_app

__all__ = ["create_app"]
