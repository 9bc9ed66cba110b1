"""The review web UI (server-rendered Jinja2 + htmx) mounted under ``/review``."""
