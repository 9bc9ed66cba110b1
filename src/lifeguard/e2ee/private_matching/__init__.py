"""Privacy-preserving matching of end-to-end-encrypted media against a hash list (threshold PSI).

Design after Apple's published PSI system, adapted to PDQ near-matches; see docs/private-matching.md.
Client entry point: :func:`make_voucher`. Server: :func:`build_table`, :class:`MatchingServer`.
"""

from .client import AccountState, make_voucher
from .params import (
    CommitmentMismatch,
    InvalidTable,
    InvalidVoucher,
    Params,
    PrivateMatchingError,
)
from .server import AccountReport, Match, MatchingServer, OuterView
from .table import BlindedTable, ServerKey, build_table
from .voucher import voucher_size

__all__ = [
    "AccountReport",
    "AccountState",
    "BlindedTable",
    "CommitmentMismatch",
    "InvalidTable",
    "InvalidVoucher",
    "Match",
    "MatchingServer",
    "OuterView",
    "Params",
    "PrivateMatchingError",
    "ServerKey",
    "build_table",
    "make_voucher",
    "voucher_size",
]
