"""``seedsweep envs ...``: watch a world, or write a dataset, without the rest of seedsweep."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_commands(sub: argparse._SubParsersAction) -> None:
    envs_parser = sub.add_parser("envs", help="render or generate the physics worlds")
    cmds = envs_parser.add_subparsers(dest="envs_command", required=True)

    render = cmds.add_parser("render", help="write an animation (GIF) or a frame strip (PNG) of one episode")
    render.add_argument("env", help="ball, two_body, or a gymnasium id")
    render.add_argument("--frames", type=int, default=60)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--size", type=int, default=256, help="rendered frame size in pixels")
    render.add_argument("--out", required=True, help="FILE.gif (animation) or FILE.png (strip of frames)")
    render.add_argument("--strip", type=int, default=10, help="frames in a PNG strip")
    render.set_defaults(func=render_command)

    gen = cmds.add_parser("generate", help="write a dataset of trajectories as Parquet")
    gen.add_argument("env", help="ball, two_body, or a gymnasium id")
    gen.add_argument("--n", type=int, required=True, help="trajectories")
    gen.add_argument("--frames", type=int, help="frames per trajectory (default: the world's, 20 ball, 25 two_body)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--image-size", type=int, default=32)
    gen.add_argument("--out", help="Parquet file (default: the dataset cache)")
    gen.set_defaults(func=generate_command)


def render_command(args: argparse.Namespace) -> None:
    import gymnasium as gym
    from PIL import Image

    import envs

    env = gym.make(
        envs.dataset.resolve_env_id(args.env),
        render_mode="rgb_array",
        render_size=args.size,
        frames=args.frames,
        max_episode_steps=None,
    )
    env.reset(seed=args.seed)
    images = [env.render()]
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    for _ in range(args.frames - 1):
        env.step(zero)
        images.append(env.render())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        pick = np.linspace(0, len(images) - 1, min(args.strip, len(images))).round().astype(int)
        gap = np.full((args.size, 2, 3), 255, np.uint8)
        strip = np.concatenate([x for i in pick for x in (images[i], gap)][:-1], axis=1)
        Image.fromarray(strip).save(out)
    else:
        frames = [Image.fromarray(x) for x in images]
        duration = int(1000 * env.unwrapped.dt)
        frames[0].save(out, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    print(f"wrote {out} ({args.frames} frames of {args.env}, seed {args.seed})")


def generate_command(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    import envs

    kwargs = {"image_size": args.image_size}
    if args.frames is None:
        args.frames = envs.dataset.env_params(args.env)["frames"]
    if args.out:
        table = envs.generate(args.env, args.n, args.frames, args.seed, progress=True, **kwargs)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, args.out, compression="zstd", write_page_checksum=True)
        path = args.out
    else:
        table = envs.load_or_generate(args.env, args.n, args.frames, args.seed, progress=True, **kwargs)
        path = envs.dataset.cache_path(args.env, args.n, args.frames, args.seed, **kwargs)
    print(f"wrote {path}: {table.num_rows} trajectories x {args.frames} frames")
