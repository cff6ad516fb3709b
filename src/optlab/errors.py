"""Errors a user can act on, on the floor every module stands on."""


class SpecError(ValueError):
    """A spec that cannot run: its message names the field, the value and what is allowed."""


class StoreError(ValueError):
    """A path that is not an optlab store: one line for the user."""
