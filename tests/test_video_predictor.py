"""The video predictor family (seed system 001): its metrics on known predictions (copy-last reads 1,
perfect reads 0 with centroid error 0 and diversity 1), the centroid itself, BatchNorm in eval mode
at evaluation, and the window arithmetic."""

import pytest
import torch

from trainables import Pack, resolve_config
from trainables.models.frames import centroid
from trainables.models.video_predictor import VideoPredictor, VideoPredictorConfig


def moving_squares(n=6, T=4, size=16):
    """[n, T, 3, H, W]: a 3x3 red square moving one pixel right per frame from a random start."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, T, 3, size, size)
    for i in range(n):
        r, c = torch.randint(0, size - 3 - T, (2,), generator=g).tolist()
        for t in range(T):
            x[i, t, 0, r : r + 3, c + t : c + t + 3] = 0.9
    return x


def predictor(n_past=2, n_future=2, S=2):
    cfg = VideoPredictorConfig(n_past=n_past, n_future=n_future, widths=(4, 8), batch_size=4)
    return VideoPredictor(cfg, [torch.Generator().manual_seed(s) for s in range(S)], 16)


def test_centroid_of_known_frames():
    x = torch.zeros(3, 3, 8, 8)
    x[0, 0, 2, 5] = 1.0  # one pixel: its centre
    x[1, :, 1:4, 3:6] = 0.5  # a uniform 3x3 square: its centre pixel's centre
    assert centroid(x[:2]).tolist() == [[2.5, 5.5], [2.5, 4.5]]
    assert centroid(x[2]).tolist() == [4.0, 4.0]  # nothing in the foreground: the image centre


def test_metrics_of_copy_last_and_perfect_predictions():
    model, x = predictor(), moving_squares()
    P = model.cfg.n_past
    model.forecast = lambda clips: (
        clips[:, P - 1 : P].expand(-1, 2, -1, -1, -1).unsqueeze(0).expand(2, -1, -1, -1, -1, -1)
    )
    copy = model.evaluate(x, None)
    assert copy["copy_ratio"].tolist() == pytest.approx([1, 1])
    assert copy["centroid_h1"].tolist() == pytest.approx([1, 1])  # the square moved one pixel
    assert copy["centroid_ratio"].tolist() == pytest.approx([1, 1]) and copy["score"].tolist() == pytest.approx([2, 2])
    model.forecast = lambda clips: clips[:, P:].unsqueeze(0).expand(2, -1, -1, -1, -1, -1)
    perfect = model.evaluate(x, None)
    assert perfect["mse"].tolist() == [0, 0] and perfect["copy_ratio"].tolist() == [0, 0]
    assert perfect["centroid_h1"].tolist() == [0, 0] and perfect["diversity"].tolist() == pytest.approx([1, 1])
    assert perfect["score"].tolist() == [0, 0]
    average = x[:, P:].mean(0)  # the mean future over the validation clips (one clip per sequence)
    model.forecast = lambda clips: average.expand(2, len(clips), -1, -1, -1, -1)
    assert model.evaluate(x, None)["diversity"].tolist() == pytest.approx([0, 0], abs=1e-6)  # every clip alike


def test_evaluation_uses_running_batchnorm_statistics():
    """Evaluation runs in eval mode (running statistics, not updated): twice the same numbers."""
    config = {
        "model": "video_predictor",
        "env": "ball",
        "n_train": 16,
        "n_val": 8,
        "frames": 4,
        "image_size": 16,
        "n_past": 2,
        "n_future": 2,
        "widths": [4, 8],
        "batch_size": 8,
    }
    pack = Pack(config, [0, 1], device="cpu")
    pack.train_epoch()
    bn = pack.model.stem_bn
    running = bn.running_mean.clone()
    first, second = pack.evaluate(), pack.evaluate()
    assert torch.equal(bn.running_mean, running) and int(bn.num_batches_tracked) == 2
    assert [r["mse"] for r in first] == [r["mse"] for r in second]


def test_frames_must_hold_a_clip():
    with pytest.raises(ValueError, match="'frames'"):
        resolve_config({"model": "video_predictor", "frames": 8, "n_past": 4, "n_future": 6})
    with pytest.raises(ValueError, match="n_past"):
        VideoPredictorConfig(n_past=0)


def test_artefact_is_a_png(tmp_path):
    model = predictor()
    model.eval()
    with torch.no_grad():
        (path,) = model.artefacts(0, moving_squares(), None, tmp_path)
    assert path.name == "prediction.png" and path.read_bytes()[:4] == b"\x89PNG"


def test_conv_gemm_gives_the_same_prediction():
    model, x = predictor(), moving_squares()
    model.eval()
    past = model.norm(x[:, :2].unsqueeze(0).expand(2, -1, -1, -1, -1, -1))
    with torch.no_grad():
        grouped = model.predict(past)
        model.conv_gemm(True)
        assert torch.allclose(model.predict(past), grouped, atol=1e-5)


def test_diversity_of_a_seed_packed_equals_alone():
    """diversity is a std across clips: with predictions far from 0 and little spread (a trained
    predictor's near-constant background), E[x^2] - E[x]^2 over float32 sums cancels and a seed packed
    differs from the same seed alone (their outputs differ by float rounding; the old code was 0.004%
    off even without the offset). The float64 pairwise merge agrees to 1e-6, as mse does, and matches a
    float64 two-pass reference."""
    x = moving_squares(n=24, T=4)
    packed, alone = predictor(S=2), predictor(S=1)
    alone.load_state_dict({k: v[1:] if v.dim() else v for k, v in packed.state_dict().items()})
    for m in (packed, alone):
        m.eval()
        with torch.no_grad():
            m.head.bias += 2.0  # every output 2 std units further off 0; the old code was 0.2% off here
    with torch.no_grad():
        a, b = packed.evaluate(x, None), alone.evaluate(x, None)
        preds = packed.forecast(x).double()  # [S, 24, F, 3, H, W]: one clip per sequence (T = n_past + n_future)
    assert a["mse"][1].item() == pytest.approx(b["mse"][0].item(), rel=1e-6)
    assert a["diversity"][1].item() == pytest.approx(b["diversity"][0].item(), rel=1e-6)
    want = preds.std(1, correction=0).flatten(1).mean(1) / x[:, 2:].double().std(0, correction=0).mean()
    assert a["diversity"].tolist() == pytest.approx(want.tolist(), rel=1e-6)


def test_loss_osc_is_the_relative_std_of_the_last_training_losses():
    """loss_osc (note 001's "periodicità nella loss (picchi)"): std / mean of the training loss over the
    last osc_window steps, per seed; steps beyond the window replace the oldest; packed equals alone."""
    cfg = VideoPredictorConfig(n_past=2, n_future=2, widths=(4, 8), batch_size=4, osc_window=3)
    model = VideoPredictor(cfg, [torch.Generator().manual_seed(s) for s in range(2)], 16)
    model.train()
    x = moving_squares(n=8, T=4).unsqueeze(0).expand(2, -1, -1, -1, -1, -1)
    seen = []
    for step in range(5):
        rand = {"start": torch.zeros(2, 4, dtype=torch.long)}
        seen.append(model.losses(x[:, step % 2 :: 2], rand, step)["mse"].detach().double())
        if step == 0:
            assert model.loss_osc().tolist() == [0, 0]  # one loss: no spread yet
    last = torch.stack(seen[-3:], 1)  # [S, 3]
    want = last.std(1, correction=0) / last.mean(1)
    assert model.loss_osc().tolist() == pytest.approx(want.tolist(), rel=1e-6) and (want > 0).all()
    config = {"model": "video_predictor", "env": "ball", "n_train": 16, "n_val": 8, "frames": 4, "image_size": 16}
    config.update(n_past=2, n_future=2, widths=[4, 8], batch_size=4, osc_window=3)
    packed, alone = Pack(config, [0, 1], device="cpu"), Pack(config, [1], device="cpu")
    for p in (packed, alone):
        p.train_epoch()
    assert packed.evaluate()[1]["loss_osc"] == pytest.approx(alone.evaluate()[0]["loss_osc"], rel=1e-4)


@pytest.mark.parametrize("name", ["video_predictor_oscillation", "video_predictor_oscillation_gpu"])
def test_oscillation_specs_sweep_batch_and_width(name):
    from sweeps import spec as specs

    spec = specs.load(f"sweeps/{name}.yaml")
    assert {"batch_size", "widths", "n_future"} <= set(spec.swept()) and spec.scheduler is None
