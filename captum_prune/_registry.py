r"""Registries by name (zennit's style): a class per entry, registered with one decorator.

A :class:`Registry` maps user-facing names (``criterion="taylor"``) to small classes; the names
it lists are live, so an entry registered later (by a user or another module) is accepted by
``attribute()`` and listed by the tools at once.
"""
from typing import Callable, Dict, Generic, Iterator, Sequence, Type, TypeVar, overload

T = TypeVar("T", bound=type)


class Names(Sequence[str]):
    r"""A read-only, live view of a registry's names, in registration order (a tuple-like
    sequence: ``"taylor" in CRITERIA``, ``list(CRITERIA)``)."""

    def __init__(self, entries: Dict[str, type]) -> None:
        self._entries = entries

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index):
        return tuple(self._entries)[index]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, Names)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


class Registry(Generic[T]):
    r"""Classes by name, for one kind of option (``what``: the argument's name in errors)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: Dict[str, T] = {}
        #: The registered names, live.
        self.names = Names(self._entries)

    def register(self, name: str) -> Callable[[T], T]:
        r"""A class decorator: registers the class under ``name`` and sets its ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.what}: a registered name must be a non-empty str")

        def decorate(cls: T) -> T:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.what}: {name!r} is registered already")
            cls.name = name
            self._entries[name] = cls
            return cls

        return decorate

    def get(self, name: str) -> T:
        r"""The class registered as ``name``; a ``ValueError`` naming the option otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            allowed = ", ".join(repr(a) for a in self._entries)
            raise ValueError(f"{self.what}: {name!r} is not one of {allowed}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.names


def classes(registry: "Registry[T]") -> Dict[str, Type]:
    r"""``{name: class}`` of a registry (a copy)."""
    return dict(registry._entries)
