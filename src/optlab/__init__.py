"""optlab: a laboratory for optimizer training dynamics."""

from importlib.metadata import version

from optlab.store import load

__version__ = version("optlab")  # pyproject.toml's, the one source of truth

__all__ = ["__version__", "load"]
