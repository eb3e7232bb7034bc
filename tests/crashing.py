"""A trainable that crashes once, for the tests of Tune's restore from a checkpoint."""


def crash_once_trainable():
    """``train``, but a trial whose config has ``crash`` = E raises once after reporting epoch E (not
    after its restore): Tune's ``report`` is wrapped in the trial's process. Returned from a factory, so
    the function is local and Ray ships it by value to workers that cannot import this module; the
    production trainable has no such hook."""

    def crash_once(config):
        from ray import tune

        from trainables.train import train

        crash, config = config["crash"], {k: v for k, v in config.items() if k != "crash"}
        if crash is None or tune.get_checkpoint() is not None:
            return train(config)
        report = tune.report

        def report_then_crash(metrics, *args, **kwargs):
            report(metrics, *args, **kwargs)
            if metrics["epoch"] == crash:
                raise RuntimeError(f"test crash after epoch {crash}")

        tune.report = report_then_crash
        try:
            train(config)
        finally:
            tune.report = report

    return crash_once
