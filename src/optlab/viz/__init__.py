"""Figures drawn from the store or the environment; nothing here trains."""
