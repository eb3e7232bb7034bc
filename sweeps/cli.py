"""The ``seedsweep`` command: ``run`` a sweep, ``analyze`` its runs, ``server`` for the tracking
stack a lab shares, ``envs`` to use the worlds alone."""

from __future__ import annotations

import argparse
import sys

from analysis import cli as analysis_cli
from envs import cli as envs_cli


def add_run_command(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a sweep spec (YAML) on Ray Tune")
    run.add_argument("spec", help="sweep spec, e.g. sweeps/quickstart.yaml")
    run.add_argument("--name", help="sweep name (default: the spec's name)")
    run.add_argument("--address", help="Ray cluster to join: auto, or ray://host:port (default: local Ray)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlruns.db here)")
    run.add_argument("--storage", help="Tune results folder or URI (default: ./ray_results; shared on a cluster)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    run.add_argument(
        "--allow-mixed",
        action="store_true",
        help="resume or pool seeds trained on different devices, precisions or code (refused by default)",
    )
    run.add_argument(
        "--dashboard", action="store_true", help="start Ray's dashboard with the local Ray (http://127.0.0.1:8265)"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the configurations, resources and the rule's trivial baselines on the data, train nothing",
    )
    run.set_defaults(func=run_command)


def add_server_command(sub: argparse._SubParsersAction) -> None:
    server = sub.add_parser(
        "server", help="start the tracking stack a lab shares: PostgreSQL and an MLflow server on it"
    )
    server.add_argument("folder", help="where the database, artifacts and logs live (created on first start)")
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="address MLflow listens on (default 127.0.0.1: this machine only; see README before exposing it)",
    )
    server.add_argument("--port", type=int, default=5000, help="MLflow's port (default 5000)")
    server.add_argument("--pg-port", type=int, help="PostgreSQL's port, always on 127.0.0.1 (default: a free one)")
    server.add_argument("--workers", type=int, default=4, help="MLflow server worker processes (default 4)")
    server.add_argument(
        "--auth", action="store_true", help="MLflow's basic-auth login (user admin, password in FOLDER/mlflow-password)"
    )
    server.set_defaults(func=server_command)


def server_command(args: argparse.Namespace) -> int:
    from sweeps.server import serve

    return serve(
        args.folder, host=args.host, port=args.port, pg_port=args.pg_port, workers=args.workers, auth=args.auth
    )


def run_command(args: argparse.Namespace) -> int:
    """Run the spec; 1 when the sweep stopped before its end (interrupted or failed trials)."""
    from sweeps import preflight

    # in seconds, before torch and Ray load; once per sweep (run is given the checked Where)
    where = preflight.check(args.tracking_uri, args.storage, args.address, defaults=not args.dry_run)

    from analysis.cli import print_success_table
    from sweeps import runner
    from sweeps import spec as specs

    spec = specs.load(args.spec)
    if args.name:
        spec.name = args.name
    print(runner.plan(spec))
    if args.dry_run:
        from sweeps.baseline_check import report

        print(report(spec))
        return 0
    status = 0
    try:
        summary = runner.run(
            spec,
            where,
            address=args.address,
            resume=args.resume,
            dashboard=args.dashboard,
            allow_mixed=args.allow_mixed,
        )
        if summary["complete"]:
            print(f"sweep {spec.name!r} finished: {summary['trials']} trials in {summary['seconds']} s")
        else:
            failed = f"{summary['errors']} of {summary['trials']} trials failed" if summary["errors"] else "interrupted"
            print(
                f"sweep {spec.name!r} did not finish ({failed}); continue it with: "
                f"seedsweep run {args.spec}{' --name ' + spec.name if args.name else ''} --resume",
                file=sys.stderr,
            )
            status = 1
    except runner.AlreadyDone as done:
        print(done)
    else:
        if not summary["tracking_reachable"]:
            print(f"MLflow ({summary['tracking_uri']}) did not answer at the end: no table", file=sys.stderr)
            return status
    print_success_table(where.tracking_uri, spec.name)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seedsweep", description="Success probabilities across many random seeds.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_command(sub)
    add_server_command(sub)
    analysis_cli.add_commands(sub)
    envs_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, TypeError, RuntimeError) as err:
        print(f"seedsweep: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
