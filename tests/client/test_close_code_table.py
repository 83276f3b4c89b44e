"""The close-code table of docs/protocol.md section 6 is the one in :mod:`wsguard.close`, and the
client's reconnect policy follows it code by code."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from wsguard import close
from wsguard.client.reconnect import ReconnectPolicy
from wsguard.close import CLIENT_RULES, OnClose

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ADVICE = {
    "not reconnect": OnClose.STOP,
    "reconnect after a random delay": OnClose.RANDOM_DELAY,
    "reconnect with backoff": OnClose.BACKOFF,
    "reconnect only with a new token": OnClose.NEW_CREDENTIALS,
}
SENT = [value for value in vars(close).values() if isinstance(value, close.Close)]


def documented_rows() -> list[tuple[int, set[str], OnClose]]:
    """(code, the reasons in backticks, what a client should do) for every row of the table."""
    table = PROTOCOL.read_text(encoding="utf-8").partition("| code | reason | a client should |")[2]
    rows: list[tuple[int, set[str], OnClose]] = []
    for line in table.strip().splitlines()[1:]:
        if not line.startswith("|"):
            break
        codes, reason, should = (cell.strip() for cell in line.strip("|").split("|"))
        advice = next(action for prefix, action in ADVICE.items() if should.startswith(prefix))
        for code in codes.split(","):
            rows.append((int(code), set(re.findall(r"`([a-z_]+)`", reason.partition("(")[0])), advice))
    return rows


ROWS = documented_rows()


def test_the_table_lists_every_code_the_server_sends() -> None:
    assert len(ROWS) >= 14
    assert {sent.code for sent in SENT} <= {code for code, _, _ in ROWS}


@pytest.mark.parametrize(("code", "reasons", "advice"), ROWS)
def test_each_documented_code_is_the_shared_definition(code: int, reasons: set[str], advice: OnClose) -> None:
    assert CLIENT_RULES[code].on_close is advice
    assert reasons == {sent.reason for sent in SENT if sent.code == code} - {"normal"}


@pytest.mark.parametrize(("code", "advice"), [(code, advice) for code, _, advice in ROWS])
def test_the_client_policy_does_what_the_table_says(code: int, advice: OnClose) -> None:
    policy = ReconnectPolicy(base_delay=1.0, max_delay=8.0, going_away_delay=5.0, rng=random.Random(7))
    decision = policy.after_close(code)
    assert str(code) in decision.why
    if advice is OnClose.STOP:
        assert not decision.reconnect
    elif advice is OnClose.RANDOM_DELAY:
        assert decision.reconnect
        assert 0 <= decision.delay <= 5.0
        assert policy.attempts == 0
    elif advice is OnClose.BACKOFF:
        assert decision.reconnect
        assert 0.5 <= decision.delay <= 1.0
        assert policy.attempts == 1
    else:
        assert not decision.reconnect
        assert policy.after_close(code, fresh_credentials=True).reconnect


def test_a_code_outside_the_table_stops() -> None:
    assert 4999 not in CLIENT_RULES
    assert not ReconnectPolicy().after_close(4999).reconnect
