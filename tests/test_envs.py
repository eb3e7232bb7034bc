"""The physics worlds: gymnasium API, physics against physics, frames against states, datasets."""

import hashlib

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.camera import Camera, backdrop, render

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


def test_two_body_conserves_energy_momentum_and_centre_of_mass():
    env = gym.make(
        TWO_BODY, masses=(1.0, 2.5), min_orbits=0.0
    ).unwrapped  # heavier: slower orbits than the 1-orbit rule allows
    pos, vel = env.sample_state([np.random.default_rng(i) for i in range(32)], 1)
    positions, velocities = env.simulate(pos[:, 0], vel[:, 0], 100)
    m = env.masses[None, None, :, None]
    E = env.total_energy(positions, velocities)  # [n, frames]
    L = (m * np.cross(positions, velocities)).sum(2)  # [n, frames, 3]
    com = (m * positions).sum(2) / env.masses.sum()
    assert np.abs(E / E[:, :1] - 1).max() < 1e-4
    assert (np.linalg.norm(L - L[:, :1], axis=-1) / np.linalg.norm(L[:, :1], axis=-1)).max() < 1e-4
    assert np.abs(com - com[:, :1]).max() < 1e-9
    assert ((env.energy[0] <= E[:, 0]) & (E[:, 0] <= env.energy[1])).all()


def turns(rel):
    """Full turns swept by relative vectors [n, frames, 3] about their (fixed) orbit normal."""
    normal = np.cross(rel[:, 0], rel[:, 1])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    step = np.arctan2((np.cross(rel[:, :-1], rel[:, 1:]) * normal[:, None]).sum(-1), (rel[:, :-1] * rel[:, 1:]).sum(-1))
    return np.abs(step.sum(1)) / (2 * np.pi)


def test_two_body_sequences_follow_the_notes_rules():
    data = envs.to_numpy(envs.generate(TWO_BODY, 48, 25, seed=5))
    env = gym.make(TWO_BODY).unwrapped
    pos, vel = data["positions"].astype(float), data["velocities"].astype(float)
    energy = env.total_energy(pos[:, 0], vel[:, 0])
    assert env.G == 1.0 and ((-0.10 - 1e-5 <= energy) & (energy <= -0.07 + 1e-5)).all()
    assert turns(pos[:, :, 0] - pos[:, :, 1]).min() >= 1.0  # every sequence covers a full orbit
    assert pos[:, :, 0, 1].std(1).min() >= 1.4  # body A's depth spread
    assert np.linalg.norm(pos[:, :, 0] - pos[:, :, 1], axis=-1).min() > 2 * env.radius  # no contact
    assert np.linalg.norm(pos, axis=-1).max() <= 7.0
    np.testing.assert_allclose(pos.mean(2).std(1), 0.0, atol=1e-4)  # equal masses: the midpoint stays
    assert pos.mean((1, 2)).std() > 1.0  # ... at a random place (6 degrees of freedom in the images)
    frames = data["frames"]
    assert frames.shape[1] == 25 and (frames[:, :, 0, 0] == 153).all()  # grey 0.6 where no body is
    greenish = (frames[..., 1] > 200) & (frames[..., 0] < 60)
    magentaish = (frames[..., 0] > 200) & (frames[..., 2] > 200) & (frames[..., 1] < 60)
    assert greenish.any((2, 3)).mean() > 0.9 and magentaish.any((2, 3)).mean() > 0.9


def test_two_body_rules_are_clear_about_impossible_settings():
    env = gym.make(TWO_BODY, frames=5).unwrapped  # 16 time units: no orbit of the energy window fits
    with pytest.raises(RuntimeError, match="min_orbits"):
        env.reset(seed=0)
    with pytest.raises(ValueError, match="energy"):
        gym.make(TWO_BODY, energy=(-0.07, -0.10))


@pytest.mark.parametrize("env_id, kwargs", [(BALL, {}), (BALL, {"scene": "plain"}), (TWO_BODY, {"min_orbits": 0.0})])
def test_env_steps_equal_generate(env_id, kwargs):
    n, frames, seed = 4, 12, 11
    data = envs.to_numpy(envs.generate(env_id, n, frames, seed, **kwargs))
    env = gym.make(env_id, frames=frames, **kwargs)
    zero = np.zeros(env.action_space.shape, np.float32)
    for i, s in enumerate(envs.trajectory_seeds(seed, n)):
        obs, info = env.reset(seed=s)
        for t in range(frames):
            if t:
                obs, _, _, _, info = env.step(zero)
            np.testing.assert_array_equal(obs, data["frames"][i, t])
            np.testing.assert_array_equal(info["positions"].astype(np.float32), data["positions"][i, t])
            np.testing.assert_array_equal(info["velocities"].astype(np.float32), data["velocities"][i, t])


def test_plain_scene_gives_the_first_scenes_frames():
    # sha256 of these frames as rendered before the SPS scene existed (level camera, red ball on black)
    frames = envs.to_numpy(envs.generate(BALL, 6, 12, seed=1, scene="plain"))["frames"]
    assert hashlib.sha256(frames.tobytes()).hexdigest()[:16] == "40ad47f81a0d9577"


@pytest.mark.parametrize("scene", ["sps", "plain"])
def test_ball_centroid_tracks_projected_position(scene):
    data = envs.to_numpy(envs.generate(BALL, 16, 20, seed=2, scene=scene))
    env = gym.make(BALL, scene=scene).unwrapped
    seen = env.camera.in_view(data["positions"][:, :, 0], env.radius, 32)  # the SPS scene keeps partly hidden balls too
    ball = np.abs(data["frames"].astype(float) - backdrop(env.scene, 32)).sum(-1)[seen]  # [m, H, W]
    rows, cols = np.mgrid[0:32, 0:32] + 0.5
    mass = ball.sum((-1, -2))
    centroid = np.stack([(ball * cols).sum((-1, -2)) / mass, (ball * rows).sum((-1, -2)) / mass], -1)
    projected, _ = env.camera.project(data["positions"][:, :, 0][seen], 32)
    # Shading shifts the centroid a little, and a sphere off the axis projects to an ellipse whose
    # centre is not the centre's projection; both stay within a pixel.
    assert seen.mean() > 0.8 and np.abs(centroid - projected).max() < 1.0
    assert np.corrcoef(centroid[..., 0].ravel(), projected[..., 0].ravel())[0, 1] > 0.99
    assert np.corrcoef(centroid[..., 1].ravel(), projected[..., 1].ravel())[0, 1] > 0.99


def test_sps_scene_is_the_authors():
    env = gym.make(BALL).unwrapped
    assert env.scene_name == "sps" and env.radius == 0.5 and env.camera.fov == pytest.approx(77.32, abs=0.01)
    data = envs.to_numpy(envs.generate(BALL, 64, 20, seed=0))
    pos, vel = data["positions"][:, 0, 0], data["velocities"][:, 0, 0]
    assert (vel[:, 1] >= 0).all()  # always receding
    side = np.abs(pos[:, 0]) > 1.5
    assert (np.sign(vel[side, 0]) == -np.sign(pos[side, 0])).all()  # toward the centre
    np.testing.assert_allclose(pos[:, 2], 1.5)  # centre 1 above its resting height 0.5
    assert np.abs(vel[:, 2]).max() <= 8 and vel[:, 2].std() > 3.5  # U(-8, 8): sd 4.6
    frame = data["frames"][0, 0]
    assert (frame[0] == 102).all()  # grey 0.4 above the horizon (the floor is clipped at the far plane)
    floor = frame[-8:].astype(int)
    assert floor.min() < 80 and np.median(floor) >= 90  # dark grid lines on the grey floor
    # The pitched camera: at one height, a farther ball sits higher in the image, and it is smaller.
    uv, depth = env.camera.project(np.array([[0.0, y, 0.5] for y in (0.0, 4.0, 8.0, 12.0)]), 32)
    assert (np.diff(uv[:, 1]) < 0).all() and (np.diff(depth) > 0).all()
    images = env.draw(np.array([[[0.0, y, 0.5]] for y in (0.0, 8.0)]))
    ball = np.abs(images.astype(int) - backdrop(env.scene, 32)).sum(-1)
    rows = [np.average(np.arange(32), weights=b.sum(1)) for b in ball]
    assert rows[1] < rows[0] - 3 and (ball[1] > 0).sum() < (ball[0] > 0).sum()
    assert images[..., 1].max() > 240 and images[..., 0].max() < 120  # green
    beyond = env.draw(np.array([[[0.0, 20.0, 0.5]]]))  # past the far plane (15 along the view axis)
    assert (beyond[0] == backdrop(env.scene, 32)).all()


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
    with pytest.raises(ValueError, match="scene must be one of sps, plain"):
        gym.make(BALL, scene="dark")
    with pytest.raises(ValueError, match="n and frames"):
        envs.generate(BALL, 0, 5, 0)


def test_cli_render_and_generate(tmp_path):
    from sweeps.cli import main

    assert main(["envs", "render", "ball", "--frames", "8", "--size", "48", "--out", str(tmp_path / "b.gif")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "b.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (48, 48)
    out = tmp_path / "d.parquet"
    assert main(["envs", "generate", "two_body", "--n", "5", "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == 5 and envs.dataset.metadata(pq.read_table(out))["frames"] == 25
    assert main(["envs", "render", "nope", "--out", str(tmp_path / "x.gif")]) == 2


def test_processes_starting_together_generate_a_dataset_once(tmp_path):
    """Trials that start together on a cold node: one generates, the others wait for its file."""
    import multiprocessing

    from envs import dataset

    made, real = tmp_path / "made.txt", dataset.generate

    def counted(*args, **kwargs):
        with open(made, "a") as f:
            f.write("generated\n")
        return real(*args, **kwargs)

    def load() -> None:
        dataset.generate = counted  # in the forked child only
        assert dataset.load_or_generate("ball", 8, 4, 0, cache_dir=tmp_path, image_size=8).num_rows == 8

    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=load) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [c.exitcode for c in children] == [0] * 4
    assert made.read_text().count("generated") == 1


def test_the_cache_key_follows_a_new_worlds_own_code(tmp_path, monkeypatch):
    """A world no list names (its own package, a helper module) gets its data rebuilt when any module
    it imports changes: the key reads the world's modules, found through its imports."""
    package = tmp_path / "newworlds"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("SCALE = 1.0\n")
    (package / "world.py").write_text(
        "from envs.ball import BouncingBall\nfrom newworlds.helper import SCALE\n\n\nclass NewWorld(BouncingBall):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    gym.register("seedsweep/NewWorld-v0", entry_point="newworlds.world:NewWorld")
    try:
        names = {p.name for p in envs.dataset.world_sources("seedsweep/NewWorld-v0")}
        assert names == {"world.py", "helper.py", "ball.py", "base.py", "camera.py", "dataset.py"}
        before = envs.dataset.cache_path("seedsweep/NewWorld-v0", 8, 10, 3, cache_dir=tmp_path)
        assert envs.dataset.cache_path("seedsweep/NewWorld-v0", 8, 10, 3, cache_dir=tmp_path) == before
        (package / "helper.py").write_text("SCALE = 2.0\n")
        assert envs.dataset.cache_path("seedsweep/NewWorld-v0", 8, 10, 3, cache_dir=tmp_path) != before
    finally:
        del gym.registry["seedsweep/NewWorld-v0"]
