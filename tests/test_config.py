from pathlib import Path

import pytest

from gateway.config import ConfigError, Settings, write_limits_setting
from github_app.pacing import DEFAULT_LIMITS


def test_defaults_are_the_documented_ones(tmp_path):
    s = Settings.from_env({}, env_file=None)
    assert (s.http_host, s.http_port, s.smtp_host, s.smtp_port) == ("127.0.0.1", 8000, "127.0.0.1", 2525)
    assert s.database_url == "sqlite:///var/gateway.db"
    assert s.github_api_url == "https://api.github.com" and s.github_web_url == "https://github.com"
    assert s.max_message_bytes == 10 * 1024 * 1024 and s.reply_max_age_days == 30


def test_env_file_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("GATEWAY_HTTP_PORT=9000\nGATEWAY_SMTP_PORT=2626\n")
    s = Settings.from_env({"GATEWAY_SMTP_PORT": "2727"}, env_file=env_file)
    assert (s.http_port, s.smtp_port) == (9000, 2727)


@pytest.mark.parametrize("env, names", [
    ({"GATEWAY_HTTP_PORT": "eighty"}, "GATEWAY_HTTP_PORT"),
    ({"GITHUB_APP_ID": "my-app"}, "GITHUB_APP_ID"),
    ({"GATEWAY_SECRET_KEY": "short"}, "GATEWAY_SECRET_KEY"),
    ({"GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
    ({"GATEWAY_SMTP_RELAY_URL": "http://relay"}, "GATEWAY_SMTP_RELAY_URL"),
    ({"GITHUB_APP_PRIVATE_KEY_FILE": "/nonexistent/key.pem"}, "GITHUB_APP_PRIVATE_KEY_FILE"),
    ({"GITHUB_APP_PRIVATE_KEY": "not a key"}, "GITHUB_APP_PRIVATE_KEY"),
    ({"GATEWAY_SHOW_SENDER_ADDRESS": "maybe"}, "GATEWAY_SHOW_SENDER_ADDRESS"),
])
def test_malformed_setting_names_itself(env, names):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, env_file=None)
    assert str(info.value).startswith(names + ":") and "\n" not in str(info.value)


def test_service_requires_secret_tokens_domain_relay_and_app():
    base = {"GATEWAY_SECRET_KEY": "k" * 32, "GATEWAY_API_TOKENS": "t1", "GATEWAY_REPLY_DOMAIN": "r.example.com",
            "GATEWAY_SMTP_RELAY_URL": "smtp://relay:25", "GITHUB_APP_ID": "1",
            "GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\\nx\\n-----END RSA PRIVATE KEY-----",
            "GITHUB_WEBHOOK_SECRET": "w", "GATEWAY_PUBLIC_URL": "https://gateway.example.com"}
    Settings.from_env(base, env_file=None).require_for_service()
    for name in ["GATEWAY_SECRET_KEY", "GATEWAY_API_TOKENS", "GATEWAY_REPLY_DOMAIN", "GATEWAY_SMTP_RELAY_URL",
                 "GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "GATEWAY_PUBLIC_URL"]:
        env = {k: v for k, v in base.items() if k != name}
        with pytest.raises(ConfigError, match=f"^{name}"):
            Settings.from_env(env, env_file=None).require_for_service()


def test_secrets_do_not_show_in_repr():
    s = Settings.from_env({"GATEWAY_SECRET_KEY": "k" * 32, "GATEWAY_API_TOKENS": "tok-123",
                           "GATEWAY_SMTP_RELAY_URL": "smtp://u:hunter2@relay:587"}, env_file=None)
    assert "kkkk" not in repr(s) and "tok-123" not in repr(s) and "hunter2" not in repr(s)


def test_sandbox_defaults_persist_generated_secrets(tmp_path):
    s = Settings.from_env({"GATEWAY_DATA_DIR": str(tmp_path)}, env_file=None, sandbox=True).with_sandbox_defaults()
    s.require_for_service()
    again = Settings.from_env({"GATEWAY_DATA_DIR": str(tmp_path)}, env_file=None, sandbox=True).with_sandbox_defaults()
    assert s.secret_key == again.secret_key and s.api_tokens == again.api_tokens
    assert s.reply_domain == "localhost" and s.maildir == tmp_path / "maildir"


def test_public_url_must_be_https_outside_the_sandbox():
    env = {"GATEWAY_SECRET_KEY": "k" * 32, "GATEWAY_API_TOKENS": "t", "GATEWAY_REPLY_DOMAIN": "r.example.com",
           "GATEWAY_SMTP_RELAY_URL": "smtp://relay:25", "GITHUB_APP_ID": "1", "GITHUB_WEBHOOK_SECRET": "w",
           "GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\\nx\\n-----END RSA PRIVATE KEY-----",
           "GATEWAY_PUBLIC_URL": "http://gateway.example.com"}
    with pytest.raises(ConfigError, match="^GATEWAY_PUBLIC_URL: required, the https://"):
        Settings.from_env(env, env_file=None).require_for_service()


def test_github_write_limits_default_is_githubs_as_documented():
    default = Settings.from_env({}, env_file=None).github_write_limits
    assert default == DEFAULT_LIMITS == ((80, 60.0), (500, 3600.0))
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"| `GATEWAY_GITHUB_WRITE_LIMITS` | `{write_limits_setting(default)}` |" in readme
    explicit = Settings.from_env({"GATEWAY_GITHUB_WRITE_LIMITS": "80/60,500/3600"}, env_file=None)
    assert explicit.github_write_limits == default
    assert Settings.from_env({"GATEWAY_GITHUB_WRITE_LIMITS": "off"}, env_file=None).github_write_limits == ()


def test_retention_is_in_days_and_off_keeps_forever():
    s = Settings.from_env({}, env_file=None)
    assert (s.retain_raw_mail_days, s.retain_finished_jobs_days, s.retain_webhook_deliveries_days) == (30, 7, 7)
    s = Settings.from_env({"GATEWAY_RETAIN_RAW_MAIL_DAYS": "off", "GATEWAY_RETAIN_FINISHED_JOBS_DAYS": "0",
                           "GATEWAY_RETAIN_WEBHOOK_DELIVERIES_DAYS": "90"}, env_file=None)
    assert (s.retain_raw_mail_days, s.retain_finished_jobs_days, s.retain_webhook_deliveries_days) == (None, None, 90)
    for env in ({"GATEWAY_RETAIN_RAW_MAIL_DAYS": "a month"}, {"GATEWAY_RETAIN_FINISHED_JOBS_DAYS": "-1"},
                {"GATEWAY_RETAIN_WEBHOOK_DELIVERIES_DAYS": "2"}):  # GitHub still redelivers for 3 days
        with pytest.raises(ConfigError) as info:
            Settings.from_env(env, env_file=None)
        assert str(info.value).startswith(next(iter(env)) + ":")
