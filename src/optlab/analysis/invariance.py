"""Claim rules about scale-invariant weights (Grosse 2022, CSC 2541 lecture 5): filled in by
the theory issue."""

from __future__ import annotations

from collections.abc import Callable

from optlab.analysis.verdicts import Check, Evidence

RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {}
