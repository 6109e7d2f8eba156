"""Settings: defaults < configuration file < environment, with each value's source, and
errors that name what to fix."""
import dataclasses
import subprocess
import sys

import pytest

from recsys.cli import main
from shared.config import (CONFIG_ENV, OTHER_VARIABLES, ConfigError, Settings, bootstrap_given,
                           config_key, load_settings, read_config_file, read_settings)


def write(tmp_path, text: str, name: str = "shop.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_file_is_over_the_defaults_and_the_environment_over_the_file(tmp_path):
    path = write(tmp_path, 'blend = 0.3\nals_factors = 16\nevents_topic = "shop-events"\n')
    settings, sources = read_settings({"RECSYS_BLEND": "0.7"}, config_file=path)
    assert (settings.blend, settings.als_factors, settings.events_topic) == (0.7, 16, "shop-events")
    assert sources["blend"] == "RECSYS_BLEND"
    assert sources["als_factors"] == sources["events_topic"] == str(path)
    assert sources["alpha"] == "default" and settings.alpha == Settings().alpha


def test_recsys_config_names_the_file(tmp_path):
    path = write(tmp_path, "als_iterations = 3\n")
    assert load_settings({CONFIG_ENV: str(path)}).als_iterations == 3
    other = write(tmp_path, "als_iterations = 4\n", "other.toml")
    assert load_settings({CONFIG_ENV: str(path)}, config_file=other).als_iterations == 4


def test_every_setting_has_a_key_and_a_variable():
    for f in dataclasses.fields(Settings):
        env = f.metadata["env"]
        assert env == "KAFKA_BOOTSTRAP" or env.startswith("RECSYS_"), env
        assert config_key(env) == env.removeprefix("RECSYS_").lower()
    names = [config_key(f.metadata["env"]) for f in dataclasses.fields(Settings)]
    assert len(set(names)) == len(names)


def test_file_values_are_typed_and_integers_are_taken_for_floats(tmp_path):
    values = read_config_file(write(tmp_path, "alpha = 40\nfilter_shown = true\n"))
    assert values == {"alpha": 40.0, "filter_shown": True}
    assert isinstance(values["alpha"], float)
    for text, message in [("als_factors = 1.5", "als_factors = 1.5 is not an integer; write a TOML integer"),
                          ("als_factors = '8'", "is not an integer; write a TOML integer"),
                          ("filter_shown = 1", "write a TOML boolean"),
                          ("events_topic = 3", "write a TOML string in quotes"),
                          ("blend = true", "is not a number")]:
        with pytest.raises(ConfigError, match=message):
            read_config_file(write(tmp_path, text + "\n"))


@pytest.mark.parametrize("text, message", [
    ("blnd = 0.2", r"blnd is not a setting; did you mean blend\?"),
    ("n_recommendations = 5", r"n_recommendations is not a setting"),
    ("[scoring]\nblend = 0.2", r"scoring is not a setting.*write them at the top level"),
    ("blend = 1.5", r"blend=1.5 is out of range: it must be between 0 and 1"),
    ("als_factors = 0", r"als_factors=0 is out of range: it must be above 0"),
    ('normalisation = "zscore"', r"it must be one of 'minmax', 'rank'"),
    ("blend = ", r"is not valid TOML"),
])
def test_a_bad_file_is_one_message_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings({}, config_file=path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="configuration file .*missing.toml: No such file"):
        load_settings({CONFIG_ENV: str(tmp_path / "missing.toml")})


def test_an_unknown_recsys_variable_names_the_closest_setting():
    with pytest.raises(ConfigError, match=r"RECSYS_BLND is not a setting; did you mean RECSYS_BLEND\?"):
        load_settings({"RECSYS_BLND": "0.2"})
    with pytest.raises(ConfigError, match=r"RECSYS_NOTHING_LIKE_IT is not a setting \(unset it"):
        load_settings({"RECSYS_NOTHING_LIKE_IT": "1"})
    for name in OTHER_VARIABLES:  # read elsewhere, not settings, and not refused
        if name != CONFIG_ENV:
            load_settings({name: "x"})
    load_settings({"UNRELATED": "1", "KAFKA_OTHER": "2"})


def test_range_errors_of_the_environment_state_the_range():
    with pytest.raises(ConfigError, match=r"RECSYS_SOURCE_POOL=-1 is out of range: it must be 0 or more"):
        load_settings({"RECSYS_SOURCE_POOL": "-1"})
    with pytest.raises(ConfigError, match=r"RECSYS_N='ten' is not an integer"):
        load_settings({"RECSYS_N": "ten"})


def test_a_bootstrap_from_the_file_is_used_as_given(tmp_path):
    path = write(tmp_path, 'kafka_bootstrap = "kafka-1:9092"\n')
    assert load_settings({CONFIG_ENV: str(path)}).kafka_bootstrap == "kafka-1:9092"
    assert bootstrap_given({CONFIG_ENV: str(path)})
    assert bootstrap_given({"KAFKA_BOOTSTRAP": "k:1"})
    assert not bootstrap_given({CONFIG_ENV: str(write(tmp_path, "kafka_port = 9093\n", "p.toml"))})
    assert load_settings({}, config_file=tmp_path / "p.toml").kafka_bootstrap == "127.0.0.1:9093"


def test_recsys_config_shows_where_each_value_came_from(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, "als_factors = 16\n")
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("RECSYS_BLEND", "0.25")
    assert main(["--config", str(path), "config"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["RECSYS_ALS_FACTORS"][1:3] == ["16", str(path)]
    assert rows["RECSYS_BLEND"][1:3] == ["0.25", "RECSYS_BLEND"]
    assert rows["RECSYS_ALPHA"][2] == "default"


def test_a_bad_setting_stops_the_command_with_one_line(tmp_path):
    path = write(tmp_path, "blnd = 0.2\n")
    done = subprocess.run([sys.executable, "-m", "recsys", "--config", str(path), "config"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"recsys config: {path}: blnd is not a setting; did you mean blend?"
    assert done.stdout == ""
