"""The browser client's reconnect policy (policy.js) against the one close-code table (close.py).

Node runs the real module. Without Node this module is skipped with one line saying how to
enable it; with ``WSGUARD_REQUIRE_NODE=1`` (set by ``.ci/run``) a missing Node is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import wsguard.browser
from wsguard.close import CLIENT_RULES, OnClose

NODE = shutil.which("node")
if NODE is None and os.environ.get("WSGUARD_REQUIRE_NODE"):
    raise pytest.UsageError("Node.js required (WSGUARD_REQUIRE_NODE) but node is not on PATH")
pytestmark = pytest.mark.skipif(NODE is None, reason="install Node.js 20+ to check policy.js")

POLICY = Path(wsguard.browser.__file__).with_name("policy.js")
UNKNOWN_CODES = [1004, 1015, 3000, 4000, 4004, 4999]

SCRIPT = """
const { ReconnectPolicy } = await import(process.argv[1]);
const decide = (code, freshCredentials) =>
  new ReconnectPolicy({ random: () => 0.5 }).afterClose(code, { freshCredentials });
const codes = JSON.parse(process.argv[2]);
console.log(JSON.stringify(codes.map((code) => [code, decide(code, true), decide(code, false)])));
"""


def _decisions(codes: list[int]) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", SCRIPT, POLICY.as_uri(), json.dumps(codes)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return {code: (fresh, stale) for code, fresh, stale in json.loads(done.stdout)}


def test_every_close_code_of_the_table_gets_the_same_decision_in_the_browser() -> None:
    decisions = _decisions(sorted(CLIENT_RULES))
    for code, rule in CLIENT_RULES.items():
        fresh, stale = decisions[code]
        if rule.on_close is OnClose.STOP:
            assert not fresh["reconnect"], (code, fresh)
            assert fresh["action"], (code, fresh)
        elif rule.on_close is OnClose.NEW_CREDENTIALS:
            assert fresh["reconnect"], (code, fresh)
            assert not stale["reconnect"], (code, stale)
        else:
            assert fresh["reconnect"], (code, rule, fresh)
            assert stale["reconnect"], (code, rule, stale)
            assert fresh["delay"] > 0, (code, fresh)


def test_a_code_outside_the_table_stops_as_the_table_says() -> None:
    assert not set(UNKNOWN_CODES) & set(CLIENT_RULES)
    for code, (fresh, _) in _decisions(UNKNOWN_CODES).items():
        assert not fresh["reconnect"], (code, fresh)
