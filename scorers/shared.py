"""Models shared by several scorers in one process, built once and freed by the last user.

The aesthetic and CLIP-IQA scorers use one CLIP model, the face and identity scorers one insightface
pipeline: loading either twice would double the memory and the start-up time for nothing.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class SharedModels(Generic[T]):
    """Reference-counted models by key: `acquire` builds on first use, `release` frees on last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, list[Any]] = {}

    def acquire(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [build(), 0]
            entry[1] += 1
            return entry[0]

    def release(self, key: Hashable) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._entries[key]
                close = getattr(entry[0], "close", None)
                if close is not None:
                    close()

    def users(self, key: Hashable) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return 0 if entry is None else entry[1]
