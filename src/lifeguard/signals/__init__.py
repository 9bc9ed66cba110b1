"""Media -> signals: PDQ (+ dihedral, trimmed and region variants), vPDQ for video, MD5/SHA-256."""

from lifeguard.signals.base import SIGNAL_TYPES, SignalType, get_signal_type, normalise

__all__ = ["SIGNAL_TYPES", "SignalType", "get_signal_type", "normalise"]
