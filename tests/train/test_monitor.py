import json

from r1tune.train.monitor import EarlyStopping, MetricsLog, plot_metrics, truncate_metrics


def test_rising_rule_needs_k_consecutive_rises():
    # the guide's sketch compared nine pairs while saying ten rounds: K rises need K+1 evaluations
    stop = EarlyStopping(rising=10)
    reasons = [stop.update(1.0 + 0.01 * i) for i in range(11)]
    assert reasons[:10] == [None] * 10 and "rose in 10 consecutive" in reasons[10]


def test_rising_rule_resets_on_a_fall():
    stop = EarlyStopping(rising=3)
    for v in (1.0, 1.1, 1.2, 1.15, 1.2, 1.3):
        assert stop.update(v) is None
    assert stop.update(1.4) is not None


def test_patience():
    stop = EarlyStopping(patience=2, rising=100)
    assert stop.update(1.0) is None and stop.update(0.9) is None
    assert stop.update(0.95) is None
    assert "not improved for 2" in stop.update(0.91)


def test_state_round_trip():
    stop = EarlyStopping(patience=3, rising=2)
    stop.update(1.0)
    stop.update(1.1)
    again = EarlyStopping(**json.loads(json.dumps(stop.state())))
    assert again.update(1.2) == stop.update(1.2) is not None


def test_metrics_log_plots_and_truncation(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(1, 6):
        log.write({"step": step, "split": "train", "loss": 2.0 / step, "lr": 1e-3 * step})
    log.write({"step": 5, "split": "eval", "loss": 0.5, "token_accuracy": 0.7})
    log.close()
    assert any((tmp_path / "tensorboard").iterdir())
    pngs = plot_metrics(tmp_path)
    assert [p.name for p in pngs] == ["loss.png", "lr.png"] and all(p.stat().st_size > 5000 for p in pngs)
    truncate_metrics(tmp_path / "metrics.jsonl", 3)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
