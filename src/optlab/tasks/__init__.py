"""Data: the Voronoi environment of the original study."""

from optlab.tasks.voronoi import RULES, SPLITS, Environment, make_environment

__all__ = ["RULES", "SPLITS", "Environment", "make_environment"]
