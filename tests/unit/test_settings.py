from __future__ import annotations

import pytest

from tagger.errors import ConfigError
from tagger.settings import Settings


def test_defaults_are_embedded_sqlite_and_no_broker() -> None:
    s = Settings.from_env({})
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("var/tagger.db")
    assert s.broker_url == ""
    assert s.model_store.startswith("file:///")


def test_environment_values_are_typed() -> None:
    s = Settings.from_env({"TAGGER_BATCH_SIZE": "64", "TAGGER_THRESHOLD": "0.35", "TAGGER_DEVICE": "cuda:1"})
    assert (s.batch_size, s.threshold, s.device) == (64, 0.35, "cuda:1")


def test_unknown_setting_names_the_closest_one() -> None:
    with pytest.raises(ConfigError, match="Did you mean TAGGER_BATCH_SIZE"):
        Settings.from_env({"TAGGER_BATCH_SIZ": "8"})


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("TAGGER_BATCH_SIZE", "many", "not an integer"),
        ("TAGGER_BATCH_SIZE", "0", "between 1 and 1024"),
        ("TAGGER_DATABASE_URL", "mysql://x/y", "scheme must be one of"),
        ("TAGGER_BROKER_URL", "amqp://x", "redis://"),
        ("TAGGER_STORAGE_URL", "/just/a/path", "file:///"),
        ("TAGGER_DEVICE", "tpu", "auto, cpu, cuda"),
        ("TAGGER_THRESHOLD", "1.5", "between 0 and 1"),
        ("TAGGER_TORCH_THREADS", "-1", "0 \\(automatic\\) or more"),
        # Settings that used to pass this check and fail later, in a worker, a training run or beat:
        ("TAGGER_STORAGE_URL", "file://stills", "names a host 'stills'.*three slashes"),
        ("TAGGER_MODEL_STORE", "file://models/tagger", "names a host 'models'"),
        ("TAGGER_STORAGE_URL", "s3://", "names no bucket"),
        ("TAGGER_DEVICE", "cuda:abc", "cuda:N"),
        ("TAGGER_DEVICE", "cuda:", "cuda:N"),
        ("TAGGER_RETRAIN_SCHEDULE", "99 99 99 99 99", "the minute field '99'"),
        ("TAGGER_RETRAIN_SCHEDULE", "0 24 * * *", "the hour field '24'"),
        ("TAGGER_RETRAIN_SCHEDULE", "0 3 0 * *", "the day of month field '0'"),
        ("TAGGER_RETRAIN_SCHEDULE", "0 3 * 13 *", "the month field '13'"),
        ("TAGGER_RETRAIN_SCHEDULE", "0 3 * * funday", "the day of week field"),
        ("TAGGER_RETRAIN_SCHEDULE", "0 3 * *", "4 fields"),
        ("TAGGER_RETRAIN_SCHEDULE", "-5", "above 0"),
        ("TAGGER_RETRAIN_SCHEDULE", "inf", "finite"),
        ("TAGGER_RETRAIN_SCHEDULE", "-5 * * * *", "the minute field '-5'"),
        ("TAGGER_RETRAIN_SCHEDULE", "*/-1 * * * *", "the minute field"),
        ("TAGGER_METRICS_PORT", "9808", "needs TAGGER_METRICS_TOKEN"),
        ("TAGGER_METRICS_PORT", "70000", "a port number"),
        ("TAGGER_LOG_FORMAT", "xml", "text or json"),
        ("TAGGER_TASK_EVENTS", "2", "1 \\(on\\) or 0"),
    ],
)
def test_malformed_settings_say_what_would_be_right(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({var: value})


def test_as_env_round_trips() -> None:
    s = Settings.from_env({"TAGGER_BATCH_SIZE": "16", "TAGGER_BROKER_URL": "redis://h:1/0"})
    assert Settings.from_env(s.as_env()) == s


def test_the_default_schedule_is_one_celery_beat_can_run() -> None:
    """Settings skip parsing the default (Celery's parser loads Celery into every command): it must be valid."""
    from tagger.settings import RETRAIN_SCHEDULE, _schedule_problem

    assert _schedule_problem(RETRAIN_SCHEDULE) is None
    assert _schedule_problem("0 3 32 * *") is not None  # the parser is the one that checks


@pytest.mark.parametrize("schedule", ["0 3 1 * *", "*/15 * * * *", "0 3 * * mon-fri", "0 0 1 jan *", "86400"])
def test_schedules_celery_beat_can_run_are_accepted(schedule: str) -> None:
    assert Settings.from_env({"TAGGER_RETRAIN_SCHEDULE": schedule}).retrain_schedule == schedule


def test_the_variables_kubernetes_adds_for_a_service_named_tagger_are_ignored() -> None:
    injected = {
        "TAGGER_SERVICE_HOST": "10.0.0.11",
        "TAGGER_SERVICE_PORT": "8000",
        "TAGGER_SERVICE_PORT_HTTP": "8000",
        "TAGGER_PORT": "tcp://10.0.0.11:8000",
        "TAGGER_PORT_8000_TCP": "tcp://10.0.0.11:8000",
        "TAGGER_PORT_8000_TCP_PROTO": "tcp",
        "TAGGER_PORT_8000_TCP_PORT": "8000",
        "TAGGER_PORT_8000_TCP_ADDR": "10.0.0.11",
    }
    assert Settings.from_env(injected | {"TAGGER_BATCH_SIZE": "64"}).batch_size == 64
    for typo in ("TAGGER_SERVICE_HOSTS", "TAGGER_PORTS", "TAGGER_PORT_HTTP", "TAGGER_SERVCE_HOST"):
        with pytest.raises(ConfigError, match="unknown setting"):
            Settings.from_env({typo: "x"})


def test_the_metrics_port_needs_a_token_long_enough_and_never_shows_it() -> None:
    from tagger.settings import redacted

    with pytest.raises(ConfigError, match="at least 16 characters"):
        Settings.from_env({"TAGGER_METRICS_PORT": "9808", "TAGGER_METRICS_TOKEN": "short"})
    s = Settings.from_env({"TAGGER_METRICS_PORT": "9808", "TAGGER_METRICS_TOKEN": "a-long-enough-token"})
    assert (s.metrics_port, s.metrics_address) == (9808, "127.0.0.1")
    assert redacted("metrics_token", s.metrics_token) == "********"
