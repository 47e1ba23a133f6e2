"""The `images` task end to end through Snakemake on a real diffusers model: a tiny, randomly
initialised UNet2DModel + DDPMScheduler saved locally with save_pretrained (no download), declared
under `denoisers` in config only, and a PNG folder of digits upsampled to 32x32 as the data."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("diffusers")

from tests.images_fixture import save_tiny_model, write_digit_folder  # noqa: E402

from benchmark.sweep import cells_from_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def config_for(tmp: Path) -> dict:
    model = save_tiny_model(tmp / "tiny-ddpm")
    write_digit_folder(tmp / "digits32", n=8)
    return {
        "results_dir": "results", "models_dir": "models", "report": "reports/images.html",
        "seeds": {"tuning": [0], "evaluation": [1]},
        "denoisers": {"tiny": {"loader": "diffusers", "source": str(model)}},
        "experiments": {"images": {
            "task": "images", "task_params": {"folder": str(tmp / "digits32")}, "denoiser": "tiny",
            "objectives": ["inpaint", "deblur"], "rounds": 1, "samples": 4, "steps": 10,
            "methods": {"none": {"strengths": [0.0]}, "dps": {"strengths": [0.1, 0.5]}}}},
    }


def test_images_task_through_snakemake_on_a_diffusers_model(tmp_path):
    config = config_for(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = cells_from_config(config)
    assert len(cells) == 6 and all(c.spec.denoiser.loader == "diffusers" for c in cells.values())
    for cell_id in cells:  # every tuning cell with its gallery
        assert (tmp_path / "results/cells" / f"{cell_id}.png").exists()
    df = pd.read_parquet(tmp_path / "results/all.parquet")
    assert set(df.status) == {"ok"} and set(df.denoiser) == {"tiny"}
    assert {"psnr", "ssim", "meas_error", "reward_mean"} <= set(df.metric)
    ssim = df[df.metric == "ssim"].value
    assert ssim.between(-1, 1).all() and df[df.metric == "psnr"].value.gt(0).all()
    info = df.checkpoint_info.dropna().unique()
    assert len(info) == 1 and "sha256" in info[0] and "diffusers" in info[0]
    html = (tmp_path / "reports/images.html").read_text()
    assert 'id="verdict"' in html and "Sample galleries" in html
