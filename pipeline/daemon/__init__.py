"""The daemon: scheduler decisions and the APScheduler wiring around them."""
