"""The HTML comparison report: leaderboards, convergence and trade-off figures, costs, provenance.

aggregate: the numbers (pandas in, pandas out); figures: base64 PNGs; html: the jinja2 template.
`build_report` is imported on first use: the selection (verdict) needs no plotting library.
"""

__all__ = ["build_report"]


def __getattr__(name):
    if name == "build_report":
        from benchmark.report.build import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
