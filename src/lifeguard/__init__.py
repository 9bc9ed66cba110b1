"""lifeguard — a self-hostable child-safety engine.

The package reads like the pipeline: ``signals`` (media -> hashes), ``banks`` (curated lists with
provenance), ``index`` (fast lookup), ``matching`` (decisions and allow-lists), ``store`` (database).
"""

__version__ = "0.1.0"
