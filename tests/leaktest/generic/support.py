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
    warmup_rounds=1,
    rounds=1,
    clients=6,
    churn_cycles=200,
    churn_rounds=3,
    leavers=6,
)
"""A warm-up and one measured round of each scenario; the churn's three measured rounds."""
