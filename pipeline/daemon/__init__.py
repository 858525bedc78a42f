"""The daemon: what is due (``decide``, pure), doing it (``actions``), and the lock,
APScheduler and signals around them (``service``)."""
