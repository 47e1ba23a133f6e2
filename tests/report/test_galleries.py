"""benchmark/report/galleries.py: sample galleries of image tasks, found beside the cells' files and keyed by
the run id inside them; per (method, strength) the lowest seed's is shown, the unguided baseline first; a PNG
that is no cell's of these results never is."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.report import aggregate as agg
from benchmark.report import build_report
from benchmark.report.galleries import encode_png, find_galleries, pick_galleries
from tests.report.test_aggregate import _image_cell, _png
from tests.report.test_aggregate import image_results  # noqa: F401  (a fixture)


def test_report_embeds_the_lowest_seeds_gallery_per_method_and_strength(image_results, tmp_path):
    import base64

    results, pngs = image_results
    found = find_galleries(results.parent / "cells")
    assert len(found) == len(pngs) + 1  # the stale cell's gallery is found, not shown (not in the results)
    out = tmp_path / "index.html"
    build_report(results, out)  # galleries from the `cells` folder beside the results file
    html = out.read_text()
    shown = {run_id for run_id, data in pngs.items() if base64.b64encode(data).decode() in html}
    assert shown == {r for r in pngs if r.endswith("-0")}  # seed 0 of each (objective, method, strength)
    assert len(shown) == 6
    assert html.count("<h3>Sample galleries</h3>") == 2
    assert "<b>dps</b>, strength 0.3 (seed 0)" in html
    none_at = html.index("<b>none</b>, strength 0 (seed 0)")
    assert none_at < html.index("<b>dps</b>, strength 0.3 (seed 0)")  # the unguided baseline first
    for stray in ("digits/trained/exp/stray.png", "digits/trained/old/label/dps/alg1/s9.0_n50_seed0.png"):
        assert base64.b64encode((results.parent / "cells" / stray).read_bytes()).decode() not in html
    assert "fidelity metric: <b>1-ssim</b>" in html and "fidelity metric: <b>fd</b>" in html
    assert "eval_accuracy ↑" in html and "meas_error ↓" in html
    assert "http://" not in html and "https://" not in html


def test_a_png_without_a_readable_cell_file_is_no_gallery(tmp_path):
    """Only a PNG whose Parquet file beside it reads is a gallery, keyed by that file's run id; `tasks` limits
    the search to those tasks' folders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = tmp_path / "cells"
    for task, name in (("digits", "a"), ("images", "b")):
        (cells / task).mkdir(parents=True)
        pq.write_table(pa.table({"run_id": [f"{task}-{name}"] * 2}), cells / task / f"{name}.parquet")
        _png(cells / task / f"{name}.png", 10)
    _png(cells / "digits" / "lonely.png", 20)                            # no Parquet file
    (cells / "digits" / "broken.parquet").write_bytes(b"not parquet")
    _png(cells / "digits" / "broken.png", 30)                            # an unreadable one
    assert find_galleries(cells) == {"digits-a": cells / "digits/a.png", "images-b": cells / "images/b.png"}
    assert find_galleries(cells, tasks=["images", "sphere"]) == {"images-b": cells / "images/b.png"}
    assert find_galleries(tmp_path / "nowhere") == {}


def test_no_gallery_of_a_panel_is_an_empty_table_and_an_unreadable_one_names_its_file(tmp_path):
    rows = agg.label_results(pd.DataFrame(_image_cell("dps", 1.0, 0, "label", {"target": 3})))
    none = pick_galleries(rows, {"another-run": tmp_path / "x.png"})       # a gallery, but of no cell of these rows
    assert none.empty and list(none) == ["method", "strength", "seed", "status", "run_id", "path"]
    (shown,) = pick_galleries(rows, {rows["run_id"].iloc[0]: tmp_path / "x.png"}).itertuples()
    assert (shown.method, shown.strength, shown.seed, shown.path) == ("dps", 1.0, 0, tmp_path / "x.png")
    with pytest.raises(ValueError, match=f"cannot read gallery {tmp_path / 'gone.png'}: "):
        encode_png(tmp_path / "gone.png")
