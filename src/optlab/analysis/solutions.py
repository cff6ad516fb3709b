"""Claim rules about which solution an optimizer reaches on the essay's memorize-or-generalize
toy (``mg_toy``): filled in by the theory issue."""

from __future__ import annotations

from collections.abc import Callable

from optlab.analysis.verdicts import Check, Evidence

RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {}
