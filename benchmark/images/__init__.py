"""Image helpers shared by the image tasks (digits, images), pre-training and cells.

- `benchmark.images.metrics`: Frechet distance, PSNR, SSIM (on [0, 1], L = 1) and sample diversity;
- `benchmark.images.ops`: differentiable per-sample image operations (translation);
- `benchmark.images.gallery`: sample galleries (PNG grids) saved beside a cell's Parquet file.

Models see images in [-1, 1]; PSNR and SSIM map them to [0, 1] before measuring (see metrics).
"""
