"""The SPS configuration the unit tests train: small enough for seconds on a CPU core."""

TINY = {
    "env": "ball",
    "n_train": 32,
    "n_val": 16,
    "frames": 8,
    "image_size": 16,
    "channels": [8, 16, 16],
    "dec_hidden": [16],
    "rnn_width": 32,
    "batch_size": 16,
    "rnn_min_context": 3,
    "grad_clip": 1.0,
    "lr": 3e-3,
}
