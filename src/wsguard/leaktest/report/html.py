"""A self-contained HTML report: inline CSS and SVG charts, nothing fetched from anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from wsguard.leaktest.report.table import HEADERS, overall_verdict, scenario_row
from wsguard.leaktest.results import INCONCLUSIVE, PASS, RunReport, ScenarioReport
from wsguard.leaktest.sampling import PSUTIL_RSS, Sample
from wsguard.leaktest.verdict import BLOCKS, CONNECTIONS, REGISTRY, RSS, TASKS, USERS
from wsguard.probe import APP_COUNT, SCOPES_OPEN
from wsguard.probe import TASKS as PROBE_TASKS

WIDTH, HEIGHT, MARGIN = 640, 200, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
COUNT_SERIES = (CONNECTIONS, USERS, "wsguard_user_connections_max", REGISTRY, TASKS)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.pass{color:#2ca02c;font-weight:bold}.leak,.fail,.error{color:#d62728;font-weight:bold}
.inconclusive{color:#ff7f0e;font-weight:bold}
svg{background:#fafafa;border:1px solid #ddd;margin:.5em 0}
.legend span{margin-right:1em}
"""


def line_chart(title: str, samples: Sequence[Sample], series: Sequence[str], scale: float = 1.0) -> str:
    """An SVG line chart of ``series`` over time, each divided by ``scale``."""
    points = {name: [(s.at, s.values[name] / scale) for s in samples if name in s.values] for name in series}
    points = {name: p for name, p in points.items() if p}
    if not points:
        return f"<p>{escape(title)}: no samples</p>"
    xs = [x for p in points.values() for x, _ in p]
    ys = [y for p in points.values() for _, y in p]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > 0 else 1.0
    if y1 == y0:
        y1 = y0 + 1

    def sx(x: float) -> float:
        return MARGIN + (x - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN)

    def sy(y: float) -> float:
        return HEIGHT - MARGIN + (y0 - y) / (y1 - y0) * (HEIGHT - 2 * MARGIN)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{MARGIN}" y="16" font-size="13">{escape(title)}</text>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
        f'y2="{HEIGHT - MARGIN}" stroke="#999"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#999"/>',
        f'<text x="2" y="{MARGIN + 4}" font-size="10">{y1:.4g}</text>',
        f'<text x="2" y="{HEIGHT - MARGIN}" font-size="10">{y0:.4g}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 8}" font-size="10" '
        f'text-anchor="end">{x1 - x0:.1f} s</text>',
    ]
    legend = []
    for colour, (name, pts) in zip(COLOURS * 3, points.items(), strict=False):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        legend.append(f'<span style="color:{colour}">&#9644; {escape(name)}</span>')
    parts.append("</svg>")
    return "".join(parts) + f'<div class="legend">{"".join(legend)}</div>'


def _probe_series(samples: Sequence[Sample]) -> list[str]:
    """The counts of a run against any app's probe: its scopes, tasks and the app's own counts."""
    named = sorted({key for s in samples for key in s.values if key.startswith(APP_COUNT + "{")})
    return [SCOPES_OPEN, PROBE_TASKS, *named]


def _scenario_section(scenario: ScenarioReport) -> str:
    verdict = scenario.verdict
    memory_series = [s for s in (PSUTIL_RSS, RSS) if any(s in x.values for x in scenario.samples)]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in scenario.reasons)
    return (
        f'<h2 id="{escape(scenario.name)}">{escape(scenario.name)} '
        f'<span class="{verdict}">{verdict.upper()}</span></h2>'
        f"<p>{escape(scenario.description)}</p>"
        + (f"<ul>{reasons}</ul>" if reasons else "")
        + line_chart("connection counts", scenario.samples, (*COUNT_SERIES, *_probe_series(scenario.samples)))
        + line_chart("allocated blocks", scenario.samples, (BLOCKS,))
        + line_chart("resident memory (MB)", scenario.samples, memory_series[:1], scale=1e6)
    )


def render_html(report: RunReport, server_log: str | None = None) -> str:
    """The whole report as one HTML document that opens offline; ``server_log``: where the output
    of the servers the run started is, relative to the report, linked."""
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td class="{s.verdict if i == 1 else ""}">{escape(cell)}</td>'
            for i, cell in enumerate(scenario_row(s))
        )
        + "</tr>"
        for s in report.scenarios
    )
    overall = overall_verdict(report)
    overall_class = PASS if report.passed else INCONCLUSIVE if report.inconclusive else "leak"
    log = (
        f'<p>server output: <a href="{escape(server_log)}">{escape(server_log)}</a></p>' if server_log else ""
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>wsguard leakcheck: {escape(overall)}</title><style>{STYLE}</style></head><body>"
        f'<h1>wsguard leakcheck: <span class="{overall_class}">'
        f"{escape(overall)}</span></h1>"
        f"<p>profile <b>{escape(report.profile)}</b>, over <b>{escape(report.transport)}</b>, "
        f"{escape(report.target)}, "
        f"started {escape(report.started_at)}, {report.duration_s:.1f} s</p>"
        + log
        + f"<table><tr>{head}</tr>{rows}</table>"
        + "".join(_scenario_section(s) for s in report.scenarios)
        + "</body></html>"
    )
