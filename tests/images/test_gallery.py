"""benchmark/images/gallery.py: sample galleries (PNG grids beside a cell's Parquet file): 10 tiles a row, at most
10 x 10, the atomic write, grey and RGB tiles, the default scale, and an empty cell's tile."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.images.gallery import auto_scale, gallery_path, grid_image, save_gallery
from tests.tasks.images.test_task import N, colour_dir, task  # noqa: F401 (fixtures: the images task's folder)

def test_gallery_grid_and_atomic_write(tmp_path):
    x = torch.linspace(-1, 1, 110 * 64).view(110, 1, 8, 8)
    path = save_gallery(x, gallery_path(tmp_path / "cell.parquet"), scale=2)
    assert path == tmp_path / "cell.png" and sorted(p.name for p in tmp_path.iterdir()) == ["cell.png"]
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (10 * 17 + 1, 10 * 17 + 1)   # 10 x 10 tiles at most
    a = np.array(grid_image(x[:40], scale=1))
    assert a.shape == (4 * 9 + 1, 10 * 9 + 1)            # 10 per row: chain i (class i mod 10) in column i mod 10
    assert a[1 + 9, 1 + 3 * 9] == round((float(x[13, 0, 0, 0]) + 1) * 127.5)
    a = np.array(grid_image(x[:3], scale=1))
    assert a.shape == (1 * 9 + 1, 3 * 9 + 1)                                 # one row of three
    assert a[1, 1] == 0 and a[8, 8] == round((float(x[0, 0, 7, 7]) + 1) * 127.5)
    assert np.array(grid_image(None)).shape == (24, 96)                     # a cell with no samples


def test_gallery_of_colour_32px_images(task, tmp_path):
    a = np.array(grid_image(task.images))                                    # default scale: 1 from 32 px
    assert a.shape == (33 + 1, N * 33 + 1, 3)
    expected = ((task.images[1].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert (a[1:33, 34:66] == expected).all()
    assert Image.open(save_gallery(task.images, tmp_path / "g.png")).mode == "RGB"
    assert np.array(grid_image(task.images[:, :1])).shape == (34, N * 33 + 1)  # grey
    assert np.array(grid_image(torch.zeros(2, 1, 8, 8))).shape == (1 * 33 + 1, 2 * 33 + 1)  # digits: scale 4


def test_default_scale_and_channels():
    """Tiles about 32 px a side: max(1, 32 // max(H, W)); 1 or 3 channels only."""
    assert [auto_scale(h, w) for h, w in ((8, 8), (16, 8), (32, 32), (64, 48), (33, 1))] == [4, 2, 1, 1, 1]
    assert np.array(grid_image(torch.zeros(1, 1, 16, 16))).shape == (16 * 2 + 2, 16 * 2 + 2)
    with pytest.raises(ValueError, match="1-channel \\(grey\\) or 3-channel \\(RGB\\) images, got 2 channels"):
        grid_image(torch.zeros(1, 2, 8, 8))
