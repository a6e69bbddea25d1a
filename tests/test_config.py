"""Configuration: TOML file, CASSETTED_* overlay, defaults, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassetted import config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CASSETTED_") or name == "STATE_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./config/cassetted.toml here


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "SYSTEM_CONFIG", Path("/nonexistent/cassetted.toml"))
    settings = config.load()
    assert settings.mqtt.host == "127.0.0.1" and settings.mqtt.port == 1883
    assert settings.mqtt.protocol == "5" and settings.mqtt.base_topic == "cassetted"
    assert settings.generation.max_concurrent == 1
    assert settings.state_dir == Path.home() / ".local/share/cassetted"
    assert settings.library_dir == settings.state_dir / "library"


def test_state_directory_from_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/cassetted:/var/lib/other")
    assert config.load(write(tmp_path, "")).state_dir == Path("/var/lib/cassetted")
    monkeypatch.setenv("CASSETTED_STATE_DIR", str(tmp_path))
    assert config.load(write(tmp_path, "")).state_dir == tmp_path


def test_env_overrides_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nport = 1884\nbase_topic = "home/cassetted"\n'
                           '[rooms.living_room]\nname = "Living Room"\naliases = ["lounge"]\n')
    settings = config.load(path)
    assert settings.mqtt.port == 1884 and settings.mqtt.base_topic == "home/cassetted"
    assert settings.rooms["living_room"].aliases == ["lounge"]
    monkeypatch.setenv("CASSETTED_MQTT__PORT", "1999")
    monkeypatch.setenv("CASSETTED_MQTT__BASE_TOPIC", "house/music/")
    settings = config.load(path)
    assert settings.mqtt.port == 1999 and settings.mqtt.base_topic == "house/music"


def test_file_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "cassetted.toml").write_text("[mqtt]\nport = 1001\n")
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc.toml")
    assert config.load().mqtt.port == 1001
    (tmp_path / "etc.toml").write_text("[mqtt]\nport = 1002\n")
    assert config.load().mqtt.port == 1002
    monkeypatch.setenv("CASSETTED_CONFIG", str(write(tmp_path, "[mqtt]\nport = 1003\n")))
    assert config.load().mqtt.port == 1003
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[mqtt]\nport = 1004\n")
    assert config.load(explicit).mqtt.port == 1004


@pytest.mark.parametrize(("text", "key"), [
    ("[mqtt]\nport = 0\n", "mqtt.port"),
    ('[mqtt]\nprotocol = "4"\n', "mqtt.protocol"),
    ("[generation]\nmax_concurrent = 0\n", "generation.max_concurrent"),
    ('[generation]\nformat = "aiff"\n', "generation.format"),
    ("[mqtt]\nprot = 1\n", "mqtt.prot: unknown key (did you mean 'port'?)"),
    ('[rooms.Living-Room]\nname = "x"\n', "rooms"),
    ('[rooms.den]\noutput = "mpd"\n', "rooms.den.name"),
    ("[mqtt\n", "cannot read"),
])
def test_invalid_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(write(tmp_path, text))
    message = str(info.value)
    assert key in message and "\n" not in message


def test_invalid_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASSETTED_MQTT__PORT", "many")
    with pytest.raises(config.ConfigError, match=r"mqtt\.port"):
        config.load(write(tmp_path, ""))


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_example_config_is_valid_and_complete() -> None:
    from cassetted.cluster.settings import ClusterSettings
    from cassetted.household.settings import (
        ChildSafeSettings,
        HouseholdSettings,
        KaraokeSettings,
        PartySettings,
        SleepSettings,
    )

    example = Path(__file__).parent.parent / "config" / "cassetted.example.toml"
    settings = config.load(example)
    text = example.read_text()
    for section, model in [("mqtt", config.MqttSettings), ("storage", config.StorageSettings),
                           ("generation", config.GenerationSettings),
                           ("voice", config.VoiceSettings), ("hermes", config.HermesSettings),
                           ("household", HouseholdSettings), ("party", PartySettings),
                           ("sleep", SleepSettings), ("child_safe", ChildSafeSettings),
                           ("karaoke", KaraokeSettings), ("cluster", ClusterSettings)]:
        for name in model.model_fields:
            assert (f"{name} =" in text or f"# {name} =" in text  # a key, or a table of them
                    or f"[{section}.{name}" in text), f"{section}.{name} undocumented"
    assert settings.rooms
