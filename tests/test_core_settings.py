"""Settings are validated when built: lists become typed values, a bad value is one line naming its
variable (never a traceback), secrets stay secret, and a misspelled CALLSTREAM_* variable is reported."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from callstream.cli import main
from core.errors import ConfigError
from core.settings import Settings, unknown_variables


def test_lists_are_parsed_into_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_EDGE_ALLOW_CIDRS", "203.0.113.0/24, 2001:db8::/32,192.0.2.7")
    monkeypatch.setenv("CALLSTREAM_NUMBER_PROTECTION", "caller_num=mask,\ncallee_num=hash")
    monkeypatch.setenv("CALLSTREAM_AUTH_SCHEMES", "wsse,aksk")
    settings = Settings()
    assert settings.edge_allow_cidrs == (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32"),
                                         ipaddress.ip_network("192.0.2.7/32"))
    assert settings.number_protection == (("caller_num", "mask"), ("callee_num", "hash"))
    assert settings.auth_schemes == ("wsse", "aksk")
    assert Settings(edge_allow_cidrs="").edge_allow_cidrs == ()


@pytest.mark.parametrize(("values", "named"), [
    ({"edge_port": "eighty"}, "CALLSTREAM_EDGE_PORT='eighty'"),
    ({"edge_allow_cidrs": "10.0.0.0/8,not-a-net"}, "CALLSTREAM_EDGE_ALLOW_CIDRS entry 'not-a-net'"),
    ({"number_protection": "caller_num=scramble"}, "CALLSTREAM_NUMBER_PROTECTION entry 'caller_num=scramble'"),
    ({"auth_schemes": "aksk,basic"}, "CALLSTREAM_AUTH_SCHEMES='basic'"),
    ({"producer_compression": "brotli"}, "CALLSTREAM_PRODUCER_COMPRESSION='brotli'"),
    ({"prepare_ahead": "0"}, "CALLSTREAM_PREPARE_AHEAD='0'"),
])
def test_a_bad_value_fails_when_built_and_names_its_variable(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**values)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_secrets_are_secret_strings_and_stay_out_of_messages() -> None:
    settings = Settings(apps="app:s3cret-app", number_pepper="s3cret-pepper-0123456789", kafka_sasl_password="s3cret-pw")
    shown = repr(settings) + str(settings)
    assert "s3cret" not in shown
    assert settings.app_secrets() == {"app": "s3cret-app"}
    assert settings.kafka_sasl_password.get_secret_value() == "s3cret-pw"
    with pytest.raises(ConfigError) as caught:
        Settings(number_pepper=["s3cret-pepper"])
    assert "s3cret" not in str(caught.value) and "CALLSTREAM_NUMBER_PEPPER=(secret)" in str(caught.value)


def test_unknown_variables_are_reported_with_the_likely_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CALLSTREAM_KAFKA_BOOTSTRAPS", "k:9092")
    monkeypatch.setenv("CALLSTREAM_ZZZ_NOTHING_LIKE_IT", "1")
    assert unknown_variables({"CALLSTREAM_KAFKA_BOOTSTRAPS": "", "CALLSTREAM_EDGE_PORT": "1", "OTHER": ""}) == {
        "CALLSTREAM_KAFKA_BOOTSTRAPS": "CALLSTREAM_KAFKA_BOOTSTRAP"}
    with caplog.at_level(logging.WARNING, logger="core.settings"):
        Settings()
    text = caplog.text
    assert "CALLSTREAM_KAFKA_BOOTSTRAPS is not a callstream setting" in text
    assert "did you mean CALLSTREAM_KAFKA_BOOTSTRAP?" in text
    assert "CALLSTREAM_ZZZ_NOTHING_LIKE_IT is not a callstream setting and is ignored" in text


def test_the_cli_answers_a_bad_variable_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALLSTREAM_EDGE_PORT", "eighty")
    assert main(["schemas"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "CALLSTREAM_EDGE_PORT='eighty' is not valid" in err
    assert "Traceback" not in err


def test_the_environment_of_a_child_gives_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(apps="app:s3cret", number_pepper="p" * 20, kafka_sasl_password="pw", edge_port=9000,
                        edge_allow_cidrs="10.0.0.0/8,2001:db8::/32", number_protection="caller_num=mask",
                        auth_schemes="wsse", republish=False, kafka_ssl_cafile="/etc/ca.pem")
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings
