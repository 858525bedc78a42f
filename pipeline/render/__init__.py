"""Rendering: Markdown, the one Jinja environment, the issue email, its lint, the archive site."""
