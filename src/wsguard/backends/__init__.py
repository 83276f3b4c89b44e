"""Backends: where events are numbered, retained and fanned out. ``memory`` is the embedded default."""

from wsguard.backends.base import Backend, Envelope, Published
from wsguard.backends.memory import MemoryBackend

__all__ = ["Backend", "Envelope", "MemoryBackend", "Published"]
