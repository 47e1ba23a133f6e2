"""benchmark/report/html.py: the page's numbers as text (significant digits, a dash for what is missing, a CI
or 'CI n/a'), the template strict about missing keys, and the page written atomically."""

from __future__ import annotations

import math

import jinja2
import numpy as np
import pytest

from benchmark.report.html import MISSING, fmt_ci, fmt_num, render, write_text_atomic


def test_fmt_num_significant_digits_integers_and_a_dash_for_what_is_missing():
    assert [fmt_num(x) for x in (None, "", math.nan, math.inf, np.float64(-math.inf))] == [MISSING] * 5
    assert (fmt_num(True), fmt_num(False)) == ("yes", "no")                   # not 1 and 0
    assert (fmt_num(3), fmt_num(np.int64(123456789))) == ("3", "123456789")   # integers whole
    assert (fmt_num(2 / 3), fmt_num(1234567.0), fmt_num(0.000123456)) == ("0.6667", "1.235e+06", "0.0001235")
    assert fmt_num(np.float32(2 / 3), digits=2) == "0.67" and fmt_num("label") == "label"


def test_fmt_ci_mean_and_half_width_or_ci_n_a():
    assert fmt_ci(1.23456, 0.012345) == "1.235 ± 0.012"                      # the half width to two digits
    assert fmt_ci(5.0, math.nan) == fmt_ci(5, None) == "5 (CI n/a)"          # one seed
    assert fmt_ci(math.nan, 0.1) == fmt_ci(None, 0.1) == MISSING


def test_the_template_refuses_a_missing_key_and_the_page_is_written_whole(tmp_path):
    with pytest.raises(jinja2.UndefinedError):
        render({})
    out = tmp_path / "site" / "index.html"
    out.parent.mkdir()
    write_text_atomic("<p>µ ± σ</p>", out)
    assert out.read_text(encoding="utf-8") == "<p>µ ± σ</p>"
    assert [p.name for p in out.parent.iterdir()] == ["index.html"]          # no temporary left beside it
