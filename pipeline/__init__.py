"""Brief: a newsletter publishing pipeline. Nothing happens at import time."""

__version__ = "0.1.0"
