"""Web apps: the local preview (``preview``) and the public pages (``public``)."""
