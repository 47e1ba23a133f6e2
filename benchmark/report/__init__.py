"""The HTML comparison report: leaderboards, convergence and trade-off figures, costs, provenance.

aggregate: the numbers (pandas in, pandas out); figures: base64 PNGs; html: the jinja2 template.
"""

from benchmark.report.build import build_report

__all__ = ["build_report"]
