"""The master key in memory: a mutable buffer that sealing overwrites."""

from __future__ import annotations

import os

KEY_BYTES = 32


class MasterKey:
    """32 secret bytes held in a ``bytearray`` so :meth:`zeroize` can overwrite them.

    Never formatted, compared by value or pickled. Python may have copied the bytes elsewhere
    (hashing, AES key schedules); zeroizing the one long-lived buffer is what is in our hands.
    """

    __slots__ = ("_buffer", "_zeroized")

    def __init__(self, material: bytes | bytearray) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError("a master key is 32 bytes")
        self._buffer = bytearray(material)
        self._zeroized = False

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    @property
    def material(self) -> bytearray:
        if self._zeroized:
            raise ValueError("the master key was zeroized")
        return self._buffer

    def zeroize(self) -> None:
        for i in range(len(self._buffer)):
            self._buffer[i] = 0
        self._zeroized = True

    def __repr__(self) -> str:
        return "MasterKey(<secret>)"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("a MasterKey cannot be pickled")


def zeroize(buffer: bytearray | None) -> None:
    if buffer is not None:
        for i in range(len(buffer)):
            buffer[i] = 0
