"""Many trials writing to one MLflow server at once: runs/s on PostgreSQL and on SQLite, and a check
that every value arrived exactly once.

Starts its own servers on 127.0.0.1 (``sweeps.server``: PostgreSQL from the system's server
programs, and an ``mlflow server`` on each backend), then ``--writers`` processes each write their
share of ``--runs`` seed runs through ``trainables.tracking.Tracker``, as the trainable does: one
parent run per trial of ``--seeds`` seeds, ``--epochs`` epochs of 6 metrics per seed (3 training
losses, 3 validation metrics) and 6 aggregates on the parent, sent every ``--flush-every`` epochs
with ``log_batch``, then the final tags and every run terminated. Afterwards the backend's
``metrics`` table is read directly (SQLAlchemy): each (run, metric, step) must hold exactly one row,
with the value written.

    .venv/bin/python benchmarks/tracking_load.py            # 1000 seed runs x 50 epochs, 8 writers
    .venv/bin/python benchmarks/tracking_load.py --runs 80 --epochs 5   # a quick look
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from table import emit  # benchmarks/table.py

from sweeps import server as servers

SEED_KEYS = ("train/total", "train/recon", "train/pred", "linear_proj_mse", "recon_mse", "pred_mse")
PARENT_KEYS = tuple(f"median_{k}" for k in SEED_KEYS)


def value(trial: int, seed: int, key: str, step: int) -> float:
    """The value written for ``key`` of a seed (seed -1: the parent) at ``step``: unique per cell, exact in float64."""
    return trial * 1e6 + (seed + 1) * 1e3 + step + SEED_KEYS.index(key.removeprefix("median_")) / 8


def write(args: tuple) -> tuple[float, float, dict[str, tuple[int, int]]]:
    """One writer: its trials, one after the other. Returns (start, end, run id -> (trial, seed))."""
    uri, experiment, trials, seeds, epochs, flush_every, ready = args
    from trainables.tracking import Tracker

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # no "View run" line per terminated run
    ready.wait()  # every writer has imported MLflow: the clock starts together
    start, written = time.time(), {}
    for trial in trials:
        tracker = Tracker(
            uri,
            experiment,
            experiment,
            f"trial{trial}",
            f"config{trial}",
            {"lr": 0.001, "trial": trial},
            list(range(seeds)),
        )
        for epoch in range(1, epochs + 1):
            per_seed = [{k: value(trial, s, k, epoch) for k in SEED_KEYS} for s in range(seeds)]
            tracker.log(epoch, {k: value(trial, -1, k, epoch) for k in PARENT_KEYS}, per_seed)
            if epoch % flush_every == 0 or epoch == epochs:
                assert tracker.flush(), "the tracking server did not answer"
        tracker.finish([{"status": "finished", "success": s % 2 == 0} for s in range(seeds)])
        written[tracker.parent] = (trial, -1)
        written.update({run: (trial, s) for s, run in enumerate(tracker.children)})
    return start, time.time(), written


def check(db_uri: str, written: dict[str, tuple[int, int]], epochs: int) -> int:
    """Every (run, key, step) once with its value, straight from the backend's tables; returns rows read."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(db_uri)
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT run_uuid, key, step, value FROM metrics")).fetchall()
    engine.dispose()
    ours = [r for r in rows if r[0] in written]
    counts = Counter((r[0], r[1], r[2]) for r in ours)
    duplicated = sum(1 for c in counts.values() if c > 1)
    wrong = sum(1 for run, key, step, v in ours if v != value(written[run][0], written[run][1], key, step))
    expected = sum(len(SEED_KEYS) * epochs for _ in written)
    assert duplicated == 0, f"{duplicated} (run, metric, step) cells written more than once"
    assert wrong == 0, f"{wrong} values differ from what was written"
    assert len(counts) == expected, f"{expected - len(counts)} of {expected} (run, metric, step) cells missing"
    return len(ours)


def measure(name: str, backend: str, artifacts: Path, args, env: dict) -> dict:
    server = servers.start_mlflow(backend, artifacts, env=env, workers=args.server_workers)
    try:
        trials = list(range(args.runs // args.seeds))
        ctx = mp.get_context("spawn")
        with ctx.Manager() as manager:
            ready = manager.Barrier(args.writers)
            jobs = [
                (
                    server.uri,
                    f"load-{name}",
                    trials[w :: args.writers],
                    args.seeds,
                    args.epochs,
                    args.flush_every,
                    ready,
                )
                for w in range(args.writers)
            ]
            with ctx.Pool(args.writers) as pool:
                done = pool.map(write, jobs)
    finally:
        server.stop()
    start, end = min(d[0] for d in done), max(d[1] for d in done)
    written = {run: who for d in done for run, who in d[2].items()}
    rows = check(backend, written, args.epochs)
    seeds = sum(1 for _, s in written.values() if s >= 0)
    return {
        "backend": name,
        "seed runs": seeds,
        "metric values": rows,
        "seconds": round(end - start, 1),
        "runs/s": round(seeds / (end - start), 1),
        "values/s": round(rows / (end - start)),
        "exactly once": "yes",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="seed runs in all (default 1000)")
    parser.add_argument("--seeds", type=int, default=25, help="seeds per trial (one parent run each; default 25)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per seed run, 6 metrics each (default 50)")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writer processes (default 8)")
    parser.add_argument(
        "--flush-every", type=int, default=10, help="epochs between sends (default 10, as eval_every 10)"
    )
    parser.add_argument(
        "--server-workers", type=int, default=4, help="mlflow server worker processes (default 4, its own)"
    )
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--backends", default="postgresql,sqlite", help="comma-separated: postgresql, sqlite")
    args = parser.parse_args()
    if args.runs % args.seeds:
        parser.error("--runs must be a multiple of --seeds")

    rows = []
    with tempfile.TemporaryDirectory(prefix="seedsweep-load-") as tmp:
        os.chmod(tmp, 0o755)  # PostgreSQL, run as its own user under root, reaches its folder
        for name in args.backends.split(","):
            if name == "sqlite":
                rows.append(
                    measure(name, f"sqlite:///{tmp}/load.db", Path(tmp) / "sqlite-artifacts", args, dict(os.environ))
                )
            elif name == "postgresql":
                pg = servers.start_postgres(Path(tmp) / "postgres")
                try:
                    os.environ["PGPASSFILE"] = str(pg.pgpass)  # for this process's check, and the server
                    rows.append(measure(name, pg.uri, Path(tmp) / "pg-artifacts", args, pg.env()))
                finally:
                    pg.stop()
            else:
                parser.error(f"--backends: unknown backend {name!r}; use postgresql, sqlite")
            print(f"{name}: {rows[-1]}", flush=True)
    emit(
        f"tracking load; {args.runs} seed runs x {args.epochs} epochs x {len(SEED_KEYS)} metrics from {args.writers} "
        f"writers ({args.seeds} seeds per trial, sent every {args.flush_every} epochs) into one mlflow server "
        f"({args.server_workers} workers)",
        ["backend", "seed runs", "metric values", "seconds", "runs/s", "values/s", "every value exactly once"],
        [
            f"| {r['backend']} | {r['seed runs']:,} | {r['metric values']:,} | {r['seconds']} | {r['runs/s']} | "
            f"{r['values/s']:,} | {r['exactly once']} |"
            for r in rows
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
