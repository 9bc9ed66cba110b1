"""Fast lookup structures: exact PDQ near-neighbour index and exact digest (MD5/SHA-256) index."""

from lifeguard.index.exact import ExactIndex
from lifeguard.index.fileformat import IndexFileError
from lifeguard.index.pdq import PdqIndex

__all__ = ["ExactIndex", "IndexFileError", "PdqIndex"]
