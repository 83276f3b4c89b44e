"""Reports of a run: a text table, a JSON file and a self-contained HTML file."""

from wsguard.leaktest.report.html import render_html
from wsguard.leaktest.report.json_report import to_json
from wsguard.leaktest.report.table import render_profiles, render_table

__all__ = ["render_html", "render_profiles", "render_table", "to_json"]
