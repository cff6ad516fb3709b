"""The built-in experiments, as TOML files beside this module."""

from __future__ import annotations

import tomllib
from pathlib import Path

from optlab.errors import SpecError

HERE = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def describe() -> dict[str, str]:
    """Each catalog experiment's name and one-line description."""
    return {
        n: tomllib.loads((HERE / f"{n}.toml").read_text()).get("description", "") for n in names()
    }


def catalog_path(name: str) -> Path:
    path = HERE / f"{name}.toml"
    if not path.exists():
        raise SpecError(
            f"experiment: {name!r} is neither a catalog name nor a .toml file; "
            f"catalog: {', '.join(names())}"
        )
    return path
