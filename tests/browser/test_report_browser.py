"""The report page in a real browser (headless Chromium): no console errors or failed resources, every
figure drawn at a non-zero size, the sortable tables sort when a header is clicked, and the page
never scrolls sideways (every table scrolls in its own box).

Chromium is driven without extra Python packages: the test loads a copy of the page into which a
script is injected as the first element of <head>. It records every error from the very start (script
errors, failed resources, console.error, unhandled rejections); on `load` it opens every <details>,
measures every image, clicks every header of every table.sortable twice, and writes all it saw as JSON
into a <pre> that `chromium --dump-dom` prints. The checks themselves are in Python, and
test_each_check_catches_its_breakage shows that each of them fails on a page broken on purpose.

Chromium: found on PATH (or GUIDEBENCH_CHROMIUM); missing, it is installed with apt-get when running
as root with CI=true or GUIDEBENCH_INSTALL_CHROMIUM=1. With CI=true a Chromium that cannot run is a
failure; elsewhere the tests are skipped with the reason.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from benchmark.report import build_report
from benchmark.report import verdict as vd
from benchmark.results import to_table, write_atomic
from tests.report.test_verdict import EVAL, HEADER, TUNE, _frame, _groups, _hacked_panel

CI = os.environ.get("CI", "").lower() == "true"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RESULTS_ID = "guidebench-test-results"

# Injected as the first element of <head>: capture from the start, check on `load`. Non-ASCII in the
# JSON is escaped so that the result survives any decoding of the dumped DOM.
PROBE = """<script>
(function () {
  var errors = [];
  function note(kind, message) { errors.push({kind: kind, message: String(message)}); }
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      var url = String(t.currentSrc || t.src || t.href || "").slice(0, 80);
      note("resource", t.tagName.toLowerCase() + " failed to load: " + url);
    } else {
      note("script", e.message + " (" + e.filename + ":" + e.lineno + ")");
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) { note("promise", e.reason); });
  document.addEventListener("securitypolicyviolation", function (e) {
    note("csp", e.violatedDirective + " " + e.blockedURI);
  });
  var consoleError = console.error;
  console.error = function () {
    note("console.error", Array.prototype.map.call(arguments, String).join(" "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var out = {charset: document.characterSet, errors: errors, images: [], tables: [], resources: []};
    try {
      document.querySelectorAll("details").forEach(function (d) { d.open = true; });
      document.querySelectorAll("img").forEach(function (img) {
        var r = img.getBoundingClientRect();
        out.images.push({alt: img.alt, src: String(img.getAttribute("src") || "").slice(0, 40),
                         complete: img.complete, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
                         width: r.width, height: r.height, inDetails: !!img.closest("details")});
      });
      performance.getEntriesByType("resource").forEach(function (e) { out.resources.push(e.name.slice(0, 200)); });
      var linked = "script[src], link[href], img[src], iframe[src], source[src], video[src], audio[src], " +
                   "embed[src], object[data]";
      document.querySelectorAll(linked).forEach(function (el) {
        var url = el.getAttribute("src") || el.getAttribute("href") || el.getAttribute("data") || "";
        if (!/^data:/.test(url)) { out.resources.push(el.tagName.toLowerCase() + " " + url.slice(0, 200)); }
      });
      var doc = document.documentElement;
      out.layout = {pageWidth: doc.scrollWidth, viewportWidth: doc.clientWidth, tables: []};
      document.querySelectorAll("table").forEach(function (table, i) {
        var box = table.parentElement, boxed = false;
        for (; box && box !== document.body; box = box.parentElement) {
          var ox = getComputedStyle(box).overflowX;
          if (ox === "auto" || ox === "scroll") { boxed = true; break; }
        }
        out.layout.tables.push({index: i, width: table.getBoundingClientRect().width, boxed: boxed,
                                head: (table.rows[0] ? table.rows[0].textContent : "").trim().slice(0, 40)});
      });
      document.querySelectorAll("table.sortable").forEach(function (table) {
        var heads = Array.prototype.slice.call(table.querySelectorAll("thead th"));
        var rows = function () {
          return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
            return Array.prototype.map.call(r.cells, function (c) { return c.textContent.trim(); });
          });
        };
        var aria = function () { return heads.map(function (h) { return h.getAttribute("aria-sort"); }); };
        var rec = {header: heads.map(function (h) { return h.textContent.trim(); }), rows: rows(), clicks: []};
        heads.forEach(function (th, col) {
          th.click();
          var first = {rows: rows(), aria: aria()};
          th.click();
          rec.clicks.push({col: col, first: first, second: {rows: rows(), aria: aria()}});
        });
        out.tables.push(rec);
      });
    } catch (e) {
      note("probe", e && e.stack || e);
    }
    var pre = document.createElement("pre");
    pre.id = "%s";
    pre.textContent = JSON.stringify(out).replace(/[\\u0080-\\uffff]/g, function (c) {
      return "\\\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4);
    });
    document.body.appendChild(pre);
  });
})();
</script>
""" % RESULTS_ID


# ---------------------------------------------------------------------------------------------
# Chromium

def _find_chromium() -> str | None:
    named = os.environ.get("GUIDEBENCH_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).exists() else None)
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _install_chromium() -> str:
    """apt-get install chromium, when allowed (root, and CI=true or GUIDEBENCH_INSTALL_CHROMIUM=1)."""
    allowed = CI or os.environ.get("GUIDEBENCH_INSTALL_CHROMIUM") == "1"
    if not allowed:
        return "not installed (set GUIDEBENCH_INSTALL_CHROMIUM=1 to let the test apt-get install it)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not installed, and this is not root with apt-get to install it"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout)[-1000:]}"
    return "apt-get install chromium gave no chromium on PATH"


def _command(browser: str, profile: Path, url: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--mute-audio", f"--user-data-dir={profile}", "--window-size=1280,1024", "--virtual-time-budget=5000",
            "--enable-logging=stderr", "--v=0", "--dump-dom", url]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> str:
    """A Chromium that runs headless here: its path. Skipped (failed with CI=true) otherwise."""
    browser = _find_chromium()
    why = None
    if browser is None:
        why = _install_chromium()
        browser = _find_chromium()
    if browser is not None:
        profile = tmp_path_factory.mktemp("chromium-profile")
        try:
            proc = subprocess.run(_command(browser, profile, "data:text/html,<p id=x>alive</p>"),
                                  capture_output=True, text=True, timeout=120)
            if '<p id="x">alive</p>' in proc.stdout:
                return browser
            why = f"{browser} does not run headless (exit {proc.returncode}): {proc.stderr[-1500:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"{browser} does not run headless: {exc}"
    message = f"no usable Chromium for the report browser tests: {why}"
    if CI:
        pytest.fail(message)
    pytest.skip(message)


def probe(browser: str, page_html: str, folder: Path) -> tuple[dict, str]:
    """Load `page_html` (with PROBE injected first in <head>) in headless Chromium from a file in
    `folder`; returns (what the probe recorded, Chromium's stderr)."""
    assert page_html.count("<head>") == 1, "the page has no single <head> to inject the probe into"
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "page.html"
    page.write_text(page_html.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    proc = subprocess.run(_command(browser, folder / "profile", page.as_uri()), capture_output=True, text=True,
                          timeout=180)
    found = re.search(rf'<pre id="{RESULTS_ID}">(.*?)</pre>', proc.stdout, re.S)
    assert found, (f"the probe wrote no results (exit {proc.returncode}); stderr:\n{proc.stderr[-3000:]}\n"
                   f"stdout:\n{proc.stdout[-1000:]}")
    return json.loads(html.unescape(found.group(1))), proc.stderr


# ---------------------------------------------------------------------------------------------
# The checks: each returns the problems it found (empty: passed).

def console_problems(result: dict, stderr: str) -> list[str]:
    """(a) No script error, failed resource, console.error or unhandled rejection, no console message
    in Chromium's log, nothing linked or loaded but data: URIs (the page is self-contained), read as UTF-8."""
    problems = [f"{e['kind']}: {e['message']}" for e in result["errors"]]
    problems += [f"Chromium log: {line.strip()}" for line in stderr.splitlines() if ":CONSOLE" in line]
    problems += [f"a resource that is not embedded: {r}" for r in result["resources"] if not r.startswith("data:")]
    if result["charset"] != "UTF-8":
        problems.append(f"page decoded as {result['charset']}, not UTF-8")
    return problems


def figure_problems(result: dict) -> list[str]:
    """(b) Every image decoded (naturalWidth > 0), drawn with a non-zero box, embedded as a data: URI."""
    problems = [] if result["images"] else ["the page has no images"]
    for i, img in enumerate(result["images"]):
        where = f"image {i} ({img['alt']!r})"
        if not img["src"].startswith("data:image/"):
            problems.append(f"{where} is not embedded: src {img['src']!r}")
        if not (img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0):
            problems.append(f"{where} not decoded: complete={img['complete']}, "
                            f"natural size {img['naturalWidth']}x{img['naturalHeight']}")
        if not (img["width"] > 0 and img["height"] > 0):
            problems.append(f"{where} drawn at {img['width']}x{img['height']}")
    return problems


def layout_problems(result: dict) -> list[str]:
    """(d) The page never scrolls sideways, and every table sits in a box of its own that does (CSS
    overflow-x auto or scroll), so a table wider than the page scrolls inside it."""
    lay = result["layout"]
    problems = []
    if lay["pageWidth"] > lay["viewportWidth"]:
        problems.append(f"the page scrolls sideways: {lay['pageWidth']} px wide in a {lay['viewportWidth']} px window")
    problems += [f"table {t['index']} ({t['head']!r}, {t['width']:.0f} px) is not in a box that scrolls sideways"
                 for t in lay["tables"] if not t["boxed"]]
    return problems


_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def _number(text: str) -> float | None:
    """The leading number of a cell ('0.6 ± 0.01' -> 0.6), None when it has none."""
    m = _NUMBER.match(text.replace("\u2212", "-"))
    return float(m.group(1)) if m else None


def sort_problems(result: dict) -> tuple[list[str], int]:
    """(c) For every sortable table and header: each click keeps the rows whole and marks that header
    alone with aria-sort, ascending then descending; on a numeric column (every cell starts with a
    number) the first click orders the rows by it ascending, the second descending. Returns the
    problems and the number of numeric columns with at least two distinct values so checked."""
    problems, checked = [], 0
    if not result["tables"]:
        problems.append("the page has no table.sortable")
    for t, table in enumerate(result["tables"]):
        original = sorted(map(tuple, table["rows"]))
        for click in table["clicks"]:
            col = click["col"]
            name = f"table {t} column {col} ({table['header'][col]!r})"
            numbers = [_number(r[col]) if col < len(r) else None for r in table["rows"]]
            numeric = all(x is not None for x in numbers)
            for label, state, want in (("1st", click["first"], "ascending"), ("2nd", click["second"], "descending")):
                expected_aria = [want if i == col else None for i in range(len(table["header"]))]
                if state["aria"] != expected_aria:
                    problems.append(f"{name}, {label} click: aria-sort {state['aria']}, expected {expected_aria}")
                if sorted(map(tuple, state["rows"])) != original:
                    problems.append(f"{name}, {label} click: the rows changed, not only their order")
                if numeric:
                    got = [_number(r[col]) for r in state["rows"]]
                    if got != sorted(got, reverse=want == "descending"):
                        problems.append(f"{name}, {label} click: not {want}: {[r[col] for r in state['rows']]}")
            checked += numeric and len(set(numbers)) > 1
    if not checked:
        problems.append("no sortable table has a numeric column with two distinct values to sort by")
    return problems, checked


# ---------------------------------------------------------------------------------------------
# The page

@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> str:
    """The report of a hand-made panel (tests/report/test_verdict.py's reward-hacked sphere panel, tuning and
    evaluation seeds) with its selection folder, so that the verdict section renders too."""
    folder = tmp_path_factory.mktemp("browser_report")
    cells = _hacked_panel(TUNE + EVAL)
    rows = [r for c in cells for r in c]
    table = to_table(rows).append_column("cell", pa.array([r["cell"] for r in rows], pa.string()))
    write_atomic(table, folder / "all.parquet")
    df = _frame(cells)
    tune = df[df["seed"].isin(TUNE)]
    vd.write_selection(vd.select(tune, _groups(tune), HEADER), HEADER, HEADER["seeds"], folder / "selected")
    out = build_report(folder / "all.parquet", folder / "index.html", selected=folder / "selected")
    page = out.read_text(encoding="utf-8")
    assert 'id="verdict"' in page and "<details" in page and 'class="sortable' in page
    return page


@pytest.fixture(scope="module")
def seen(chromium, report_html, tmp_path_factory) -> tuple[dict, str]:
    return probe(chromium, report_html, tmp_path_factory.mktemp("browser_page"))


def test_no_console_errors_and_nothing_but_embedded_resources(seen):
    result, stderr = seen
    assert console_problems(result, stderr) == []


def test_every_figure_is_drawn_at_a_nonzero_size(seen):
    result, _ = seen
    assert len(result["images"]) >= 4           # the verdict's compute figure and the panel's three
    assert figure_problems(result) == []


def test_sortable_tables_sort_by_the_clicked_column(seen):
    result, _ = seen
    problems, checked = sort_problems(result)
    assert problems == []
    assert checked >= 3


# Each breakage of a copy of the page, and which checks must then fail (the others must still pass).
SORT_LINE = 'return dir === "ascending" ? c : -c;'
WIDE_TABLE = '<table style="width: 3000px"><tr><td>wider than any window</td></tr></table>'
BREAKAGES = {
    "script error": (("</body>", "<script>window.noSuchFunction();</script>\n</body>"), {"console"}),
    "console.error": (("</body>", "<script>console.error('broken on purpose');</script>\n</body>"), {"console"}),
    "corrupt image": (('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA'), {"console", "figures"}),
    "missing image file": (("</body>", '<img src="no-such-figure.png" alt="x">\n</body>'), {"console", "figures"}),
    "stylesheet beside the page": (("</head>", '<link rel="stylesheet" href="page.html">\n</head>'), {"console"}),
    "collapsed image": (("</style>", "figure img { height: 0; }\n</style>"), {"figures"}),
    "sort reversed": ((SORT_LINE, 'return dir === "ascending" ? -c : c;'), {"sort"}),
    "sort keeps the order": (("rows.forEach(function (r) { body.appendChild(r); });", ""), {"sort"}),
    "table boxes that do not scroll": ((".scroll { overflow-x: auto; max-width: 100%; }", ""), {"layout"}),
    "a wide table loose on the page": (("</body>", f"{WIDE_TABLE}\n</body>"), {"layout"}),
    "a wide table in its box": (("</body>", f'<div class="scroll">{WIDE_TABLE}</div>\n</body>'), set()),
}


def test_the_page_never_scrolls_sideways_and_tables_scroll_in_their_own_box(seen):
    result, _ = seen
    assert len(result["layout"]["tables"]) >= 4
    assert layout_problems(result) == []


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_check_catches_its_breakage(breakage, chromium, report_html, tmp_path):
    (old, new), failing = BREAKAGES[breakage]
    assert old in report_html, f"the page no longer has {old!r} to break"
    result, stderr = probe(chromium, report_html.replace(old, new, 1), tmp_path)
    found = {"console": console_problems(result, stderr), "figures": figure_problems(result),
             "sort": sort_problems(result)[0], "layout": layout_problems(result)}
    assert {k for k, v in found.items() if v} == failing, found
