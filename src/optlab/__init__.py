"""optlab: a laboratory for optimizer training dynamics."""

__version__ = "0.1.0"

from optlab.store import load  # noqa: E402

__all__ = ["__version__", "load"]
