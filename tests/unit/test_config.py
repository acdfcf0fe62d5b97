"""Config loading: search order, validation messages that name the key and the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dms.config import ConfigError, load_settings


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DMS_CONFIG", raising=False)
    settings, path = load_settings()
    if path is None:  # /etc/nunet/dms_config.json may exist where the package is installed
        assert settings.rest.port == 9999 and settings.p2p.mdns is False


def test_search_order_prefers_explicit_then_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, port in (("explicit.json", 1001), ("env.json", 1002), ("dms_config.json", 1003)):
        (tmp_path / name).write_text(json.dumps({"rest": {"port": port}}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DMS_CONFIG", str(tmp_path / "env.json"))
    assert load_settings(str(tmp_path / "explicit.json"))[0].rest.port == 1001
    assert load_settings()[0].rest.port == 1002
    monkeypatch.delenv("DMS_CONFIG")
    assert load_settings()[0].rest.port == 1003


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"general": {"data_dir": "state"}}))
    settings, _ = load_settings(str(tmp_path / "c.json"))
    assert settings.general.data_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"rest": {"port": "http"}}, "rest.port"),
        ({"rest": {"prot": 1}}, "rest.prot"),
        ({"p2p": {"channels": []}}, "p2p.channels"),
        ({"payment": {"mode": "cash"}}, "payment.mode"),
        ({"surprise": {}}, "surprise"),
        ([1, 2], "top level must be a JSON object"),
    ],
)
def test_errors_name_key_and_file(tmp_path: Path, content: object, expected: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as exc:
        load_settings(str(path))
    assert str(path) in str(exc.value) and expected in str(exc.value)


def test_shipped_config_is_valid() -> None:
    settings, _ = load_settings(str(Path(__file__).parents[2] / "dms_config.json"))
    assert settings.p2p.mdns is False and settings.rest.addr == "127.0.0.1"
