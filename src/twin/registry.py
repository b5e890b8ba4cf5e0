"""A small generic registry: names -> objects, with "did you mean" errors."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import TwinError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (models, mesh generators, output writers...).

    Parameters
    ----------
    kind
        What the entries are, for error messages ("reaction model").
    error
        Exception class raised for unknown names (a :class:`TwinError` subclass).
    """

    def __init__(self, kind: str, error: type[TwinError] = TwinError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; re-registering a name is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` form of :meth:`register`."""
        return lambda entry: self.register(name, entry)

    def get(self, name: str) -> T:
        """Return the entry or raise ``self.error`` naming the choices."""
        try:
            return self._entries[name]
        except KeyError:
            names = sorted(self._entries)
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise self.error(f"unknown {self.kind} '{name}'; {hint}available: {', '.join(names)}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
