"""The standalone server's policy for CPython's cyclic garbage collector.

A process that holds thousands of connections keeps hundreds of thousands of objects that the
collector tracks, and CPython's generational collector (3.11, where it was measured) runs a full
collection, which walks all of them and pauses every connection of the process meanwhile (about
400 ms at 10,000 held connections on a 2-core machine), once ten middle collections have run and
a quarter more objects were promoted to the oldest generation since the last one. At Python's
young threshold of 700 net allocations, the short-lived objects of an upgrade, a publish or a
close are often still alive at a young collection, are promoted, and count toward that quarter;
the middle collections come ten times as often too. A young threshold of 7,000 lets them die
first: over the benchmark's figures, 5 full collections instead of 35, and none inside the
10,000-connection teardown (docs/performance.md). A young collection then walks up to 7,000
objects, about a millisecond.
"""

import gc

YOUNG_THRESHOLD = 7000


def tune_collector() -> None:
    """Raise the young generation's threshold to :data:`YOUNG_THRESHOLD`; a higher one, set by
    whoever runs the process, and a collector turned off (threshold 0) are left as they are."""
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
