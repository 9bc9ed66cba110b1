"""Decisions: which banks a piece of media matches, through which variant, and allow-list suppression."""

from lifeguard.matching.matcher import Matcher
from lifeguard.matching.results import Match, MatchResult

__all__ = ["Match", "MatchResult", "Matcher"]
