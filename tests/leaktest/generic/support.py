"""Small sizes for the generic leak tests, and the apps' import strings."""

from __future__ import annotations

from pathlib import Path

from wsguard.leaktest.generic import GenericSizes

APPS = "tests.leaktest.generic.apps"
ROOT = Path(__file__).resolve().parents[3]
"""The repository, from where the apps' import strings resolve."""
WS_PATH = "/ws/{identity}"

SMALL = GenericSizes(
    name="small",
    warmup_rounds=0,
    rounds=1,
    clients=6,
    churn_cycles=200,
    churn_rounds=3,
    leavers=6,
    stall_messages=4000,
)
"""One round of each scenario (the baseline is taken after a first client came and went); the
churn's three rounds of 200 cycles. A stalled reader gets 16 MB: an unbounded queue holds most of
it (the kernel takes a few MB), over the memory bound's 4 MB floor."""
