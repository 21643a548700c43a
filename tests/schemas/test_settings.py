"""Settings from the environment: a value of the wrong kind is refused with the variable's name."""

from __future__ import annotations

import pytest

from cli.main import main
from schemas.settings import (
    ENV_BATCH_SIZE,
    ENV_INGEST_RATE,
    ENV_READY_MAX_LAG,
    Settings,
)


@pytest.mark.parametrize(
    ("variable", "value"), [(ENV_BATCH_SIZE, "five"), (ENV_READY_MAX_LAG, "1e3"), (ENV_INGEST_RATE, "fast")]
)
def test_a_value_of_the_wrong_kind_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable} must be .*'{value}'"):
        Settings.from_env()


def test_the_command_says_which_variable_is_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_BATCH_SIZE, "5k")
    assert main(["status", "--json"]) == 2
    assert f"{ENV_BATCH_SIZE} must be an integer, not '5k'" in capsys.readouterr().err


def test_numbers_are_read_and_blank_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BATCH_SIZE, " 250 ")
    monkeypatch.setenv(ENV_INGEST_RATE, "")
    settings = Settings.from_env()
    assert settings.batch_size == 250
    assert settings.ingest_rate == Settings.__dataclass_fields__["ingest_rate"].default
