"""``seedsweep analyze NAME``: print a sweep's success table and write its report."""

from __future__ import annotations

import argparse

DEFAULT_URI = "sqlite:///mlruns.db"


def add_commands(sub: argparse._SubParsersAction) -> None:
    analyze = sub.add_parser("analyze", help="success table and report of a sweep's MLflow runs")
    analyze.add_argument("name", help="sweep name (its MLflow experiment)")
    analyze.add_argument("--tracking-uri", default=DEFAULT_URI, help=f"MLflow tracking URI (default: {DEFAULT_URI})")
    analyze.add_argument("--metric", help="recompute success from this final metric (default: the stored rule)")
    analyze.add_argument("--below", type=float, help="success when the final metric is below this")
    analyze.add_argument("--above", type=float, help="success when the final metric is above this")
    analyze.add_argument("--baseline", help="config_id to compare against (default: the highest rate)")
    analyze.add_argument("--out", help="report folder (default: reports/NAME)")
    analyze.add_argument(
        "--suggest-seed-stop",
        action="store_true",
        help="print a seed_stop rule (metric, threshold, from_epoch) from the finished seeds' curves, with its false-stop rate",
    )
    analyze.set_defaults(func=analyze_command)


def analyze_command(args: argparse.Namespace) -> None:
    from analysis.report import fixed_comparison, format_table, write_report

    out = args.out or f"reports/{args.name}"
    table = write_report(args.tracking_uri, args.name, out, args.metric, args.below, args.above, args.baseline)
    print(format_table(table, fixed_comparison(table, args.baseline)))
    print(f"report: {out}/report.html")
    if args.suggest_seed_stop:
        print(suggest_for_sweep(args.tracking_uri, args.name, args.metric, args.below, args.above))


def print_success_table(tracking_uri: str, sweep: str) -> None:
    """Print the sweep's success table under its stored rule (the sweep runner's last step)."""
    from analysis.adaptive import sweep_table
    from analysis.report import fixed_comparison, format_table
    from analysis.runs import load_runs

    table = sweep_table(load_runs(tracking_uri, sweep))
    print(format_table(table, fixed_comparison(table)))


def suggest_for_sweep(tracking_uri: str, sweep: str, metric=None, below=None, above=None, sample: int = 400) -> str:
    """``seedsweep analyze NAME --suggest-seed-stop``: the rule ``suggest`` finds on the sweep's
    finished seeds (up to ``sample`` of them, spread over the configurations) under its success rule."""
    from analysis.runs import client, load_runs, metric_histories
    from analysis.seed_stop import describe_suggestion, suggest
    from analysis.success import outcome, resolve_rule

    mlflow_client = client(tracking_uri)
    runs = load_runs(tracking_uri, sweep, mlflow_client)
    given = resolve_rule(runs, metric, below, above)
    rule = given or runs.attrs["success_rule"]
    if rule is None:
        return "no success rule stored or given: pass --metric M --below X (or --above X)"
    ok = outcome(runs, given)
    finished = runs["status"].eq("finished")
    chosen = runs[finished].groupby("config_id", sort=False).head(max(1, sample // max(runs["config_id"].nunique(), 1)))
    histories = metric_histories(mlflow_client, list(chosen["run_id"][:sample]), rule.metric)
    found = suggest(histories, dict(zip(runs["run_id"], ok)), rule)
    return describe_suggestion(rule.metric, found)
