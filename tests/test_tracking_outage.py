"""trainables.tracking.Tracker while its tracking server is unreachable, without Ray: sends that fail
(one after it reached the store, as when a response is lost) keep everything queued, the queue
survives a checkpoint into a new Tracker, and each step lands exactly once; past its patience the
Tracker raises TrackingDown. The end-to-end version, with a real server stopped mid-sweep, is in
test_reliability.py."""

import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trainables import records, tracking
from trainables.tracking import Tracker, TrackingDown

DOWN = MlflowException(
    "API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded"
)


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One SQLite store for the module (creating its schema is most of these tests' time)."""
    return f"sqlite:///{tmp_path_factory.mktemp('outage') / 'mlruns.db'}"


def steps(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    keys = client.get_run(run_id).data.metrics
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in keys}


def test_an_outage_loses_and_doubles_nothing(uri, monkeypatch):
    monkeypatch.setattr(tracking, "RETRY_EVERY", 0.0)
    tracker = Tracker(uri, "out", "out", "trial1", "cfg", {"lr": 0.1}, [0, 1], patience=60)
    tracker.log(1, {"median_loss": 1.0}, [{"loss": 1.0}, {"loss": 1.1}])
    assert tracker.flush()

    real, calls = tracker.client.log_batch, []

    def lost_then_down(run_id, **kwargs):  # the first send arrives but its answer is lost; then nothing answers
        calls.append(run_id)
        if len(calls) == 1:
            real(run_id, **kwargs)
        raise DOWN

    monkeypatch.setattr(tracker.client, "log_batch", lost_then_down)
    tracker.log(2, {"median_loss": 0.9}, [{"loss": 0.9}, {"loss": 1.0}])
    tracker.tag_config(note="queued")
    assert not tracker.flush() and tracker.down_since is not None
    assert not tracker.flush()  # first it asks what the failed send delivered: the parent's step 2 arrived
    queued = tracker.unsent()
    assert set(queued["metrics"]) == set(tracker.children) and {len(rows) for rows in queued["metrics"].values()} == {1}
    assert queued["tags"][tracker.parent]["note"] == "queued"

    # the trial restarts from a checkpoint holding that queue, and the server is back
    again = Tracker(uri, "out", "out", "trial1", "cfg", {"lr": 0.1}, [0, 1], run_ids=tracker.run_ids, unsent=queued)
    assert again.flush()
    client = MlflowClient(uri)
    for run_id in [again.parent, *again.children]:
        assert all(s == [1, 2] for s in steps(client, run_id).values()), steps(client, run_id)
    assert client.get_run(again.parent).data.tags["note"] == "queued"

    # the same, the original tracker recovering in place
    monkeypatch.setattr(tracker.client, "log_batch", real)
    tracker.log(3, {"median_loss": 0.8}, [{"loss": 0.8}, {"loss": 0.9}])
    assert tracker.flush() and tracker.down_since is None
    for run_id in [tracker.parent, *tracker.children]:
        assert all(s == [1, 2, 3] for s in steps(client, run_id).values()), steps(client, run_id)


def test_past_its_patience_the_tracker_gives_up(uri, monkeypatch):
    monkeypatch.setattr(tracking, "RETRY_EVERY", 0.0)
    tracker = Tracker(uri, "p", "p", "trial1", "cfg", {}, [0], patience=0.2)
    monkeypatch.setattr(tracker.client, "log_batch", lambda *a, **k: (_ for _ in ()).throw(DOWN))
    tracker.log(1, {"m": 1.0}, [{"m": 1.0}])
    assert not tracker.flush()
    time.sleep(0.3)
    with pytest.raises(TrackingDown, match="unreachable for more than 0.2 s"):
        tracker.flush()
    assert records.unreachable(DOWN) and not records.unreachable(MlflowException("INVALID_PARAMETER_VALUE: bad key"))
