"""The base of every exception wsguard raises on purpose.

Each exception is defined beside the code that raises it, and importable from there as before;
all of them derive from :class:`WSGuardError`, so that an application can catch wsguard's
refusals and failures apart from its own bugs. Where a standard base tells more (``ValueError``
for bad input, ``ImportError`` for a missing extra), an exception derives from that too.
"""


class WSGuardError(Exception):
    """Something wsguard refused or could not do: bad input, a missing extra, an unreachable
    backend, a refused credential."""
