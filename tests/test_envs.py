"""The physics worlds: gymnasium API, physics against physics, frames against states, datasets."""

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.camera import Camera, render
from envs.two_body import orbit_elements

BALL, TWO_BODY = envs.ENV_IDS["ball"], envs.ENV_IDS["two_body"]


@pytest.mark.parametrize("env_id", [BALL, TWO_BODY])
def test_check_env(env_id):
    env = gym.make(env_id, render_mode="rgb_array", render_size=64)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=3)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    assert info["positions"].shape == info["velocities"].shape == (env.unwrapped.bodies, 3)
    assert env.render().shape == (64, 64, 3)


def test_ball_apex_heights_fall_by_restitution_squared():
    e, g, r = 0.8, 10.0, 1.0
    env = gym.make(BALL, restitution=e, gravity=g, radius=r, dt=0.01).unwrapped
    env.reset(options={"positions": [0.0, 10.0, r + 5.0], "velocities": [0.0, 0.0, 0.0]})
    heights = []
    for _ in range(1000):  # 10 s: the drop and several bounces
        env.step(np.zeros(3, np.float32))
        heights.append(env.pos[0, 0, 2] - r)
    heights = np.array(heights)
    # Apexes: local maxima of the sampled height after the first impact.
    peaks = [heights[i] for i in range(1, len(heights) - 1) if heights[i - 1] < heights[i] >= heights[i + 1]]
    peaks = peaks[:6]  # later bounces last too few samples to see their apex
    assert len(peaks) == 6
    expected = 5.0 * e ** (2 * np.arange(1, len(peaks) + 1))
    np.testing.assert_allclose(peaks, expected, rtol=0.02)


def test_ball_bounce_is_resolved_inside_the_step():
    # One big step straddling the impact: the exact answer, not the position at the end of free fall.
    env = gym.make(BALL, restitution=1.0, gravity=10.0, radius=1.0, dt=1.0).unwrapped
    env.reset(options={"positions": [0.0, 10.0, 1.0 + 1.25], "velocities": [0.0, 0.0, 0.0]})
    env.step(np.zeros(3, np.float32))  # falls 1.25 m in 0.5 s, bounces at 5 m/s, rises for 0.5 s
    np.testing.assert_allclose(env.pos[0, 0, 2], 1.0 + 1.25, atol=1e-9)
    np.testing.assert_allclose(env.vel[0, 0, 2], 0.0, atol=1e-9)


def test_ball_horizontal_motion_and_push():
    env = gym.make(BALL, dt=0.2, max_force=5.0).unwrapped
    env.reset(options={"positions": [0.0, 10.0, 4.0], "velocities": [1.0, -0.5, 0.0]})
    env.step(np.zeros(3, np.float32))
    np.testing.assert_allclose(env.pos[0, 0, :2], [0.2, 10.0 - 0.1])
    env.reset(options={"positions": [0.0, 10.0, 4.0], "velocities": [0.0, 0.0, 0.0]})
    env.step(np.array([1.0, 0.0, 0.0], np.float32))  # 5 N on 1 kg for 0.2 s
    np.testing.assert_allclose(env.pos[0, 0, 0], 0.5 * 5.0 * 0.2**2)


def test_leaving_the_view_terminates():
    env = gym.make(BALL, max_force=50.0)
    env.reset(seed=0)
    terminated, steps, rewards = False, 0, []
    while not terminated and steps < 100:
        _, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0, 0.0], np.float32))
        rewards.append(reward)
        steps += 1
    assert terminated and rewards[-1] == 0.0 and all(r == 1.0 for r in rewards[:-1])


def two_body_energy(env, pos, vel):
    m = env.masses[None, :]
    kinetic = 0.5 * (m * (vel**2).sum(-1)).sum(-1)
    r = np.linalg.norm(pos[:, 0] - pos[:, 1], axis=-1)
    return kinetic - env.G * env.masses[0] * env.masses[1] / r


def test_two_body_conserves_energy_momentum_and_centre_of_mass():
    env = gym.make(TWO_BODY, masses=(1.0, 2.5)).unwrapped
    rngs = [np.random.default_rng(i) for i in range(64)]
    pos, vel = env.sample_state(rngs, 1)
    pos, vel = pos[:, 0], vel[:, 0]
    e, periapsis, energy = orbit_elements(pos, vel, env.masses, env.G)
    keep = (energy < 0) & (e < env.max_eccentricity) & (periapsis > 2.5 * env.radius)
    assert keep.sum() > 20
    positions, velocities = env.simulate(pos[keep], vel[keep], 100)
    m = env.masses[None, None, :, None]
    E = np.stack([two_body_energy(env, positions[:, t], velocities[:, t]) for t in range(100)], 1)
    L = (m * np.cross(positions, velocities)).sum(2)  # [n, frames, 3]
    com = (m * positions).sum(2) / env.masses.sum()
    assert np.abs(E / E[:, :1] - 1).max() < 1e-4
    assert (np.linalg.norm(L - L[:, :1], axis=-1) / np.linalg.norm(L[:, :1], axis=-1)).max() < 1e-4
    assert (np.linalg.norm(com - com[:, :1], axis=-1) / np.linalg.norm(com[:, :1], axis=-1)).max() < 1e-4
    # Sampled orbits really orbit: the separation changes direction by a good angle over 100 frames.
    rel = positions[:, :, 0] - positions[:, :, 1]
    cos = (rel[:, 0] * rel[:, 50]).sum(-1) / np.linalg.norm(rel[:, 0], axis=-1) / np.linalg.norm(rel[:, 50], axis=-1)
    assert np.median(cos) < 0.9


def test_two_body_orbits_are_bound_and_in_view():
    table = envs.generate(TWO_BODY, 32, 20, seed=5)
    data = envs.to_numpy(table)
    env = gym.make(TWO_BODY).unwrapped
    e, _, energy = orbit_elements(data["positions"][:, 0].astype(float), data["velocities"][:, 0].astype(float), env.masses, env.G)
    assert (energy < 0).all() and (e < 0.9).all()
    assert env.camera.in_view(data["positions"], env.radius, 32).all()
    np.testing.assert_allclose(data["positions"].mean(2).std(1), 0.0, atol=1e-4)  # equal masses: the midpoint stays


@pytest.mark.parametrize("env_id", [BALL, TWO_BODY])
def test_env_steps_equal_generate(env_id):
    n, frames, seed = 4, 12, 11
    data = envs.to_numpy(envs.generate(env_id, n, frames, seed))
    env = gym.make(env_id, frames=frames)
    zero = np.zeros(env.action_space.shape, np.float32)
    for i, s in enumerate(envs.trajectory_seeds(seed, n)):
        obs, info = env.reset(seed=s)
        for t in range(frames):
            if t:
                obs, _, _, _, info = env.step(zero)
            np.testing.assert_array_equal(obs, data["frames"][i, t])
            np.testing.assert_array_equal(info["positions"].astype(np.float32), data["positions"][i, t])
            np.testing.assert_array_equal(info["velocities"].astype(np.float32), data["velocities"][i, t])


def test_ball_centroid_tracks_projected_position():
    data = envs.to_numpy(envs.generate(BALL, 16, 20, seed=2))
    camera = gym.make(BALL).unwrapped.camera
    intensity = data["frames"].astype(float).sum(-1)  # [n, T, H, W]
    rows, cols = np.mgrid[0:32, 0:32] + 0.5
    mass = intensity.sum((-1, -2))
    centroid = np.stack([(intensity * cols).sum((-1, -2)) / mass, (intensity * rows).sum((-1, -2)) / mass], -1)
    projected, _ = camera.project(data["positions"][:, :, 0], 32)
    # Shading (lit from the upper left) shifts the centroid a little; the projection is within a pixel.
    assert np.abs(centroid - projected).max() < 1.0
    assert np.corrcoef(centroid[..., 0].ravel(), projected[..., 0].ravel())[0, 1] > 0.99


def test_nearer_ball_covers_more_pixels():
    camera = Camera(position=(0.0, 0.0, 0.0))
    frames = render(np.array([[[0.0, 6.0, 0.0]], [[0.0, 12.0, 0.0]]]), 1.0, np.array([[1.0, 1.0, 1.0]]), 64, camera)
    area = (frames.astype(float).sum(-1) > 0).sum((1, 2))
    assert area[0] > 3 * area[1]  # apparent area ~ 1 / depth²: 4x, less the soft edge
    np.testing.assert_allclose(area[0] / area[1], 4.0, rtol=0.25)


def test_nearer_body_hides_farther_one():
    camera = Camera(position=(0.0, 0.0, 0.0))
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    near_red = render(np.array([[[0.0, 6.0, 0.0], [0.0, 12.0, 0.0]]]), 1.0, colors, 32, camera)[0, 16, 16]
    near_blue = render(np.array([[[0.0, 12.0, 0.0], [0.0, 6.0, 0.0]]]), 1.0, colors, 32, camera)[0, 16, 16]
    assert near_red[0] > 100 and near_red[2] == 0
    assert near_blue[2] > 100 and near_blue[0] == 0


def test_same_seed_same_table_other_seed_different():
    a = envs.generate(BALL, 8, 10, seed=1)
    b = envs.generate(BALL, 8, 10, seed=1)
    c = envs.generate(BALL, 8, 10, seed=2)
    assert a.equals(b)
    assert not a.column("positions").equals(c.column("positions"))
    meta = envs.dataset.metadata(a)
    assert meta["env_id"] == BALL and meta["seed"] == 1 and meta["params"]["restitution"] == 0.9


def test_generate_chunks_and_threads_do_not_change_data(monkeypatch):
    whole = envs.to_numpy(envs.generate(BALL, 10, 6, seed=4))
    monkeypatch.setattr(envs.dataset, "CHUNK", 3)
    chunked = envs.to_numpy(envs.generate(BALL, 10, 6, seed=4))
    for key in whole:
        np.testing.assert_array_equal(whole[key], chunked[key])


def test_cache_reuses_and_rebuilds_corrupt_files(tmp_path, monkeypatch):
    table = envs.load_or_generate(BALL, 8, 10, seed=3, cache_dir=tmp_path)
    path = envs.dataset.cache_path(BALL, 8, 10, 3, cache_dir=tmp_path)
    assert path.exists()

    calls = []
    real_generate = envs.dataset.generate
    monkeypatch.setattr(envs.dataset, "generate", lambda *a, **k: calls.append(a) or real_generate(*a, **k))
    assert envs.load_or_generate(BALL, 8, 10, seed=3, cache_dir=tmp_path).equals(table)
    assert calls == []  # served from the cache

    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(64)  # corrupt a data page
    path.write_bytes(bytes(raw))
    assert envs.load_or_generate(BALL, 8, 10, seed=3, cache_dir=tmp_path).equals(table)
    assert len(calls) == 1
    assert pq.read_table(path).equals(table)  # rewritten soundly

    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert envs.load_or_generate(BALL, 8, 10, seed=3, cache_dir=tmp_path).equals(table)
    assert len(calls) == 2

    other = envs.dataset.cache_path(BALL, 8, 10, 3, cache_dir=tmp_path, restitution=0.5)
    assert other != path  # every parameter is in the key


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown env"):
        envs.generate("pendulum", 2, 5, 0)
    with pytest.raises(TypeError, match="bounciness"):
        envs.generate(BALL, 2, 5, 0, bounciness=0.5)
    with pytest.raises(ValueError, match="restitution"):
        gym.make(BALL, restitution=1.5)
    with pytest.raises(ValueError, match="n and frames"):
        envs.generate(BALL, 0, 5, 0)


def test_cli_render_and_generate(tmp_path):
    from sweeps.cli import main

    assert main(["envs", "render", "ball", "--frames", "8", "--size", "48", "--out", str(tmp_path / "b.gif")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "b.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (48, 48)
    out = tmp_path / "d.parquet"
    assert main(["envs", "generate", "two_body", "--n", "5", "--frames", "6", "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == 5
    assert main(["envs", "render", "nope", "--out", str(tmp_path / "x.gif")]) == 2
