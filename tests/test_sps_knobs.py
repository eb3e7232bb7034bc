"""The lab notes' SPS knobs (note 004): linear scheduled sampling, identity augmentation p(I), SAMPLE vs
COMPOSE, encoder stop-gradient. Each changes what it names and nothing else; their defaults are the
authors' (tests/test_golden.py: the golden run is unchanged)."""

import pytest
import torch
from scipy.stats import binomtest

from trainables.models.sps import SPS, SPSConfig, teacher_forcing_prob
from trainables.models.symmetry import act, apply_group

SEEDS = [5, 0, 12]
TINY = dict(channels=(4, 8, 8), dec_hidden=(8,), rnn_width=16, symmetry="T2R2", k=2, rnn_min_context=2)
B, T = 3, 5


def model_of(**extra) -> SPS:
    return SPS(SPSConfig(**{**TINY, **extra}), [torch.Generator().manual_seed(s) for s in SEEDS], 16)


def draws(model: SPS, n: int, step: int = 0, batch: int = B, frames: int = T) -> list[dict]:
    g = torch.Generator().manual_seed(7)
    return [model.draw(g, batch, frames, step) for _ in range(n)]


def stacked(model: SPS, step: int) -> tuple[torch.Tensor, dict]:
    x = torch.rand(len(SEEDS), B, T, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    d = [model.draw(torch.Generator().manual_seed(100 + s), B, T, step) for s in SEEDS]
    return x, {k: torch.stack([r[k] for r in d]) for k in d[0]}


def is_identity(kind: str, p: torch.Tensor) -> torch.Tensor:
    """Per element: the zero translation or the identity rotation."""
    if kind == "T":
        return (p == 0).all(-1)
    return (p == torch.eye(p.shape[-1])).all(-1).all(-1)


def assert_rate(hits: int, n: int, p: float) -> None:
    assert binomtest(hits, n, p).pvalue > 1e-4, (hits, n, p)


def test_linear_scheduled_sampling_ramps_over_its_steps():
    """ "we need 40k sched samp": P(own prediction) rises linearly to 1 at tf_linear_steps, then stays."""
    n = 1000
    assert [teacher_forcing_prob(s, (2200.0, 8000.0), n) for s in (0, 250, 1000, 5000)] == [1.0, 0.75, 0.0, 0.0]
    assert SPSConfig().tf_schedule == "sigmoid" and SPSConfig().tf_linear_steps == 40000
    model = model_of(tf_schedule="linear", tf_linear_steps=n)
    for step, rate in ((0, 0.0), (250, 0.25), (600, 0.6), (n, 1.0)):
        used = torch.stack([d["use_pred"][:, TINY["rnn_min_context"] :] for d in draws(model, 300, step)])
        assert not torch.stack([d["use_pred"][:, : TINY["rnn_min_context"]] for d in draws(model, 5, step)]).any()
        if rate in (0.0, 1.0):
            assert used.all() if rate else not used.any()
        else:
            assert_rate(int(used.sum()), used.numel(), rate)
    sigmoid = model_of()  # the authors' sigmoid at step 250 feeds (almost) no prediction back
    assert torch.stack([d["use_pred"] for d in draws(sigmoid, 300, 250)]).float().mean() < 0.05


@pytest.mark.parametrize("combine", ["branches", "compose"])
def test_identity_augmentation_draws_the_identity_at_its_rate(combine):
    p = 0.3
    model = model_of(p_identity=p, symmetry_combine=combine)
    d = draws(model, 400)
    ident = [
        torch.stack([is_identity(kind, r[f"action{i}"]) for r in d]) for i, (kind, _, _) in enumerate(model.actions)
    ]
    n = ident[0].numel()
    for one in ident:
        assert_rate(int(one.sum()), n, p)
    both = int((ident[0] & ident[1]).sum())
    # branches: each branch's copies draw their own identity; compose: one draw for the composed element
    assert_rate(both, n, p * p if combine == "branches" else p)
    assert not torch.stack([is_identity("T", r["action0"]) for r in draws(model_of(), 50)]).any()  # default p(I) 0


def test_sample_draws_one_letter_and_compose_applies_both():
    sample = model_of(symmetry_combine="sample")
    d = draws(sample, 400)
    t_moves = torch.stack([~is_identity("T", r["action0"]) for r in d])
    r_moves = torch.stack([~is_identity("R", r["action1"]) for r in d])
    assert torch.equal(t_moves, ~r_moves)  # exactly one letter per copy and sequence
    assert_rate(int(t_moves.sum()), t_moves.numel(), 0.5)
    compose = model_of(symmetry_combine="compose")
    d = draws(compose, 20)
    assert not any(is_identity("T", r["action0"]).any() or is_identity("R", r["action1"]).any() for r in d)


@pytest.mark.parametrize("combine", ["branches", "sample", "compose"])
def test_augmented_branches_are_the_combined_element_applied_and_undone(combine):
    model = model_of(symmetry_combine=combine)
    x, rand = stacked(model, step=20000)
    zs = torch.randn(len(SEEDS), B, T, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.branches(zs, rand)
    K = TINY["k"]
    groups = [[0], [1]] if combine == "branches" else [[0, 1]]
    assert out.shape == (len(SEEDS), 1 + len(groups) * K, B, T - 1, 3)  # compose/sample: one branch of K copies
    for j, group in enumerate(groups):
        moved = zs.unsqueeze(1)
        for i in group:  # T then R: (z + t) @ R
            moved = act(model.actions[i][0], moved, rand[f"action{i}"])
        use_pred = rand["use_pred"][:, 1 + j : 2 + j].expand(-1, K, -1).unsqueeze(2).expand(-1, -1, B, -1)
        with torch.no_grad():
            pred = model.rollout(moved.reshape(len(SEEDS), K * B, T, 3), use_pred.reshape(len(SEEDS), K * B, T - 1))
        steps = [(model.actions[i][0], rand[f"action{i}"], 1) for i in group]
        back = apply_group(pred.reshape(len(SEEDS), K, B, T - 1, 3), steps, inverse=True)
        assert torch.allclose(out[:, 1 + j * K : 1 + (j + 1) * K], back, atol=1e-5)
    steps = [("T", rand["action0"].unsqueeze(1), 1), ("R", rand["action1"].unsqueeze(1), 1)]  # [S, 1, K, B, ...]
    moved = apply_group(zs.unsqueeze(1).unsqueeze(1), steps)
    assert not torch.allclose(moved, zs.unsqueeze(1).unsqueeze(1).expand_as(moved), atol=1e-3)
    assert torch.allclose(
        apply_group(moved, steps, inverse=True), zs.unsqueeze(1).unsqueeze(1).expand_as(moved), atol=1e-5
    )


def encoder_and_rnn_grads(stop_grad: str, term: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    model = model_of(stop_grad=stop_grad)
    x, rand = stacked(model, step=20000)
    terms = model.losses(x, rand, 0)
    terms[term].sum().backward()
    grad = lambda w: torch.zeros_like(w) if w.grad is None else w.grad.clone()  # noqa: E731  None: no path
    return terms, grad(model.encoder[0].weight), grad(model.rnn_out.weight)


@pytest.mark.parametrize("term", ["z_pred", "sym_z"])
def test_encoder_stop_grad_blocks_what_it_names(term):
    """The same loss values; "target" cuts the encoder's gradient through the next z, "both" every
    encoder gradient of the z terms, while the RNN still learns from them."""
    (none, enc_none, rnn_none), (target, enc_target, rnn_target), (both, enc_both, rnn_both) = (
        encoder_and_rnn_grads(mode, term) for mode in ("none", "target", "both")
    )
    for k in none:
        assert torch.allclose(none[k], target[k], rtol=1e-5) and torch.allclose(none[k], both[k], rtol=1e-5), k
    assert enc_none.abs().sum() > 0 and enc_target.abs().sum() > 0
    assert not torch.allclose(enc_none, enc_target)
    assert enc_both.abs().sum() == 0
    assert torch.allclose(rnn_none, rnn_target) and torch.allclose(rnn_none, rnn_both, atol=1e-6)


def test_config_rejects_bad_knob_values():
    for bad in (
        {"tf_schedule": "cosine"},
        {"tf_linear_steps": 0},
        {"symmetry_combine": "mix"},
        {"p_identity": 1.5},
        {"stop_grad": "encoder"},
    ):
        with pytest.raises(ValueError, match=f"'{next(iter(bad))}'"):
            SPSConfig(**bad)


def test_train_size_is_an_equal_sample_budget():
    """Dan Chin's train-size design: a smaller set trains the same steps of the same batch, on fewer sequences."""
    from trainables.pack import Pack

    base = {"model": "sps", "env": "ball", "n_train": 16, "n_val": 4, "frames": 4, "image_size": 16, "batch_size": 4}
    base |= {"channels": [4, 8], "dec_hidden": [8], "rnn_width": 8, "rnn_min_context": 2, "device": "cpu"}
    packs = [Pack({**base, "train_size": size}, [0]) for size in (None, 4)]
    assert packs[0].steps_per_epoch == packs[1].steps_per_epoch == 4
    assert len(torch.unique(packs[1].train_x.flatten(1), dim=0)) == 4
    assert len(torch.unique(packs[0].train_x.flatten(1), dim=0)) == 16
    with pytest.raises(ValueError, match="train_size"):
        Pack({**base, "train_size": 17}, [0])
