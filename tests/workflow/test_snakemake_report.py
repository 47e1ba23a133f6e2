"""`snakemake --report report.zip` on the smoke preset: the archive holds the comparison page (the same
bytes the workflow wrote) and every figure PNG, each labelled and captioned (the report rule's
`report(..., labels=..., caption=...)` in workflow/rules/report.smk). Runs its own smoke workflow in a
temporary folder (a few minutes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "config/smoke.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(SMOKE), "--cores", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Iterator[tuple[Path, zipfile.ZipFile]]:
    """(the smoke run's folder, its `snakemake --report` archive)."""
    work = tmp_path_factory.mktemp("smoke_report")
    run = snakemake(work)
    assert run.returncode == 0, run.stderr[-3000:]
    zip_path = work / "report.zip"
    report = snakemake(work, "--report", str(zip_path))
    assert report.returncode == 0, report.stderr[-3000:]
    with zipfile.ZipFile(zip_path) as z:
        yield work, z


def results_index(z: zipfile.ZipFile) -> tuple[PurePosixPath, dict]:
    """(the archive's top folder, Snakemake's index of report items: path -> name, filename, labels,
    caption, mime type, data_uri relative to the top folder), read from <top>/report.html."""
    (page,) = [n for n in z.namelist() if PurePosixPath(n).name == "report.html" and len(PurePosixPath(n).parts) == 2]
    text = z.read(page).decode("utf-8")
    found = re.search(r'<script id="results">\s*var results = ', text)
    assert found, "Snakemake's report page no longer holds <script id=\"results\"> var results = {...}"
    index, _ = json.JSONDecoder().raw_decode(text, found.end())
    return PurePosixPath(page).parent, index


def test_report_zip_holds_the_page_and_every_figure(archive):
    work, z = archive
    config = yaml.safe_load(SMOKE.read_text())
    top, index = results_index(z)
    names = set(z.namelist())
    for path, item in index.items():                  # every item the index links to is in the archive
        assert str(top / item["data_uri"]) in names, (path, item["data_uri"])

    page = Path(config["report"])                     # reports/smoke.html (the default config: index.html)
    (html,) = [item for item in index.values() if item["filename"] == page.name]
    assert html["mime_type"] == "text/html"
    assert z.read(str(top / html["data_uri"])) == (work / page).read_bytes()

    figures = {p.name for p in (work / config["results_dir"] / "figures").glob("*.png")}
    assert figures, "the smoke run wrote no figure PNGs"
    pngs = {item["filename"]: item for item in index.values() if item["filename"].endswith(".png")}
    assert set(pngs) == figures
    for item in pngs.values():
        assert item["mime_type"] == "image/png"
        assert z.read(str(top / item["data_uri"])).startswith(PNG_SIGNATURE), item["filename"]


def test_report_items_are_labelled_and_captioned(archive):
    _, z = archive
    _, index = results_index(z)
    for item in index.values():
        assert item["labels"], f"{item['filename']} has no labels"
        assert all(str(v).strip() for v in item["labels"].values()), item
        assert item["caption"].strip(), f"{item['filename']} has no caption"
    pngs = [item for item in index.values() if item["filename"].endswith(".png")]
    assert pngs
    for item in pngs:
        name = item["filename"].removesuffix(".png")
        assert item["labels"] == {"figure": name}
        assert name in item["caption"]                # figures.rst names the figure (its {name} wildcard)
    assert len({item["labels"]["figure"] for item in pngs}) == len(pngs)   # labels tell the figures apart
