"""SPS's trivial baselines: latents that nobody trained, scored by SPS's own linear projection.

- ``hand_code``: the image-plane code, three numbers per frame read off the pixels: the ball's
  intensity centroid (row, column) and the square root of its foreground mass (a proxy of its
  apparent size, hence of depth). The background is the per-pixel median over the validation frames,
  the foreground weight of a pixel its largest channel difference from it. A latent that has learned
  image coordinates without undoing the camera's perspective does about this well; the paper's claim
  (a latent linear in the physical coordinates) needs a score well below it.
- ``constant``: the same latent for every frame, which carries no information. Its score is the
  scored half's mean squared deviation from the fitting half's mean (in the fitting half's standard
  units): 1 only when the two halves of the validation set have the same mean and spread.
"""

from __future__ import annotations

import torch

from trainables.metrics import linear_projection

MEDIAN_FRAMES = 256  # the background's median is taken over about this many frames, evenly spaced (speed)


def image_code(x: torch.Tensor) -> torch.Tensor:
    """Frames [N, T, 3, H, W] -> [N, T, 3]: centroid row, centroid column (pixels) and sqrt(mass)."""
    frames = x.flatten(0, 1)
    background = frames[:: max(1, len(frames) // MEDIAN_FRAMES)].median(0).values  # [3, H, W]
    w = (x - background).abs().amax(2).double()  # [N, T, H, W]
    H, W = w.shape[-2:]
    mass = w.sum((-2, -1))
    rows = torch.arange(H, dtype=w.dtype, device=w.device)
    cols = torch.arange(W, dtype=w.dtype, device=w.device)
    r = (w.sum(-1) * rows).sum(-1) / mass.clamp_min(1e-12)
    c = (w.sum(-2) * cols).sum(-1) / mass.clamp_min(1e-12)
    return torch.stack([r, c, mass.sqrt()], -1)


def sps_baselines(cfg, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
    """``hand_code`` and ``constant`` scored as ``SPS.evaluate`` scores a seed's latent mean."""
    codes = {"hand_code": image_code(x).cpu().numpy(), "constant": torch.zeros(*x.shape[:2], 1).numpy()}
    targets = y.cpu().numpy()
    out = {}
    for name, z in codes.items():
        proj = linear_projection(z, targets)
        out[name] = {"linear_proj_mse": proj["mse"], "linear_proj_r2": proj["r2"]}
    return out
