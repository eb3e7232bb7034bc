"""Model families. ``MODELS`` maps a config's ``model`` name to (config dataclass, packed module class).

A packed module is built as ``cls(cfg, generators, image_size)`` (one generator per seed, used
for the init) and provides ``draw(generator, batch, frames, step)`` (one seed's random numbers
for a step), ``losses(x, rand)`` (per-seed loss terms [S] with ``total``) and ``measure(x)``
(latents ``z`` and per-seed squared-error sums ``recon_se`` / ``pred_se``) and ``decode(z)``
(z [S, N, z_dim] -> pixel logits [N, S*3, H, W]); the speed switches ``channels_last`` (attribute)
and ``conv_gemm(on)``. Its config has
``lr``, ``lr_decay``, ``batch_size`` and ``grad_clip``.
"""

from trainables.models.sps import SPS, SPSConfig

MODELS = {"sps": (SPSConfig, SPS)}

__all__ = ["MODELS", "SPS", "SPSConfig"]
