"""Write ``tests/golden/sps.json`` (and the mid-run checkpoint ``sps_pack.pt``): SPS seeds 0-3 of a
small CPU fp32 configuration, trained 4 epochs of 8 steps, recorded by the code of the day it ran.

``tests/test_golden.py`` checks that today's SPS reproduces these numbers (rtol 1e-5), and that the
checkpoint taken after epoch 2 restores and finishes the run to the same numbers. Every SPSConfig
field is given explicitly, so later changes of a default do not move the golden run. Regenerate
only on purpose (a change of SPS's numbers), with ``python tests/golden/make_sps_golden.py``.

Regenerated when the ball world's default became the SPS authors' scene (its data changed; the
model's numbers did not: on the previous scene the previous golden run still reproduced).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

HERE = Path(__file__).parent
SEEDS = [0, 1, 2, 3]
EPOCHS, CHECKPOINT_EPOCH = 4, 2
CONFIG = {
    "model": "sps",
    "env": "ball",
    "n_train": 64,
    "n_val": 16,
    "frames": 8,
    "image_size": 16,
    "data_seed": 0,
    "device": "cpu",
    "precision": "fp32",
    "channels_last": False,
    "tf32": False,
    "compile": False,
    "conv_gemm": False,
    "success": {"metric": "linear_proj_mse", "below": 0.2},
    # every SPSConfig field, with its value of the day (tiny sizes)
    "z_dim": 3,
    "channels": [8, 16, 16],
    "dec_hidden": [16],
    "rnn_cell": "gru",
    "rnn_width": 32,
    "use_rnn": True,
    "deterministic": False,
    "loss": "bce",
    "beta": 0.01,
    "z_loss_weight": 2.0,
    "symmetry_loss_weight": 2.0,
    "symmetry": "T2R2",
    "t_range": [-1.0, 1.0],
    "r_range": [-math.pi, math.pi],
    "k": 1,
    "rnn_min_context": 3,
    "scheduled_sampling": True,
    "tf_steps": [2.0, 8.0],
    "lr": 3e-3,
    "lr_decay": 0.999,
    "batch_size": 8,
    "grad_clip": 1.0,
    "projection_target": "relative",
}


def main() -> None:
    from trainables import Pack

    torch.use_deterministic_algorithms(True)
    pack = Pack(CONFIG, SEEDS, device="cpu")
    losses = []
    for epoch in range(1, EPOCHS + 1):
        losses.append(pack.train_epoch())  # per term, per seed: the epoch's mean
        if epoch == CHECKPOINT_EPOCH:
            torch.save(pack.state_dict(), HERE / "sps_pack.pt")
    pack.finish()
    results = pack.evaluate()
    golden = {
        "config": CONFIG,
        "seeds": SEEDS,
        "epochs": EPOCHS,
        "checkpoint_epoch": CHECKPOINT_EPOCH,
        "steps_per_epoch": CONFIG["n_train"] // CONFIG["batch_size"],
        "losses": losses,  # [epoch][term][seed]
        "results": results,  # final evaluate(), per seed
    }
    (HERE / "sps.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
