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
    ],
)
def test_malformed_settings_say_what_would_be_right(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({var: value})


def test_as_env_round_trips() -> None:
    s = Settings.from_env({"TAGGER_BATCH_SIZE": "16", "TAGGER_BROKER_URL": "redis://h:1/0"})
    assert Settings.from_env(s.as_env()) == s
