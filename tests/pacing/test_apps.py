"""App-key pools (IMAGESEARCH_APP_KEYS): where the secrets come from, and errors that never show one."""

from __future__ import annotations

from pathlib import Path

import pytest
from scrapy.settings import Settings

from pipeline import settings as project_settings
from pipeline.errors import ConfigurationError
from pipeline.pacing.apps import Quota, app_pool, env_name


def _settings(**values: object) -> Settings:
    settings = Settings()
    settings.setmodule(project_settings)
    settings.setdict(values, priority="cmdline")
    return settings


def test_without_a_pool_the_crawl_has_its_one_key() -> None:
    (app,) = app_pool(_settings(IMAGESEARCH_APP_KEY="k", IMAGESEARCH_APP_SECRET="s", IMAGESEARCH_QUOTA="10/2"))
    assert (app.credentials.key, app.credentials.secret, app.quota) == ("k", "s", Quota(10, 2))


def test_pool_secrets_come_from_the_file_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("# our keys\nalpha = from-file\n\n", encoding="utf-8")
    monkeypatch.setenv(env_name("beta.2"), "from-env")
    assert env_name("beta.2") == "IMAGESEARCH_APP_SECRET_BETA_2"
    pool = app_pool(_settings(IMAGESEARCH_APP_KEYS="alpha:5/1,beta.2", IMAGESEARCH_APP_SECRETS_FILE=str(secrets),
                              IMAGESEARCH_QUOTA="1000/3600"))
    assert [(a.credentials.key, a.credentials.secret, a.quota, a.label) for a in pool] == [
        ("alpha", "from-file", Quota(5, 1), "key1"), ("beta.2", "from-env", Quota(1000, 3600), "key2")]
    # Reprs and the store's names of the keys never hold a key or a secret.
    assert "alpha" not in repr(pool) and "from-file" not in repr(pool)
    assert "alpha" not in pool[0].slot("top") and pool[0].slot("top") != pool[0].slot("onebound")


@pytest.mark.parametrize("keys,message", [
    ("alpha,alpha", "key 2 is given twice"),
    ("alpha:hunter2:5/1", "not a quota CALLS/SECONDS"),
    ("alpha,,", "key 2 is empty"),
    ("nosecret", "key 1 has no secret"),
])
def test_a_bad_pool_is_one_line_naming_no_secret(keys: str, message: str, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("alpha=hunter2\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message) as raised:
        app_pool(_settings(IMAGESEARCH_APP_KEYS=keys, IMAGESEARCH_APP_SECRETS_FILE=str(secrets)))
    assert "hunter2" not in str(raised.value) and "\n" not in str(raised.value)


def test_a_secrets_file_line_without_a_secret_is_named_by_its_number_only(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("alpha=one\nbeta hunter2\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="line 2: expected KEY=SECRET") as raised:
        app_pool(_settings(IMAGESEARCH_APP_KEYS="alpha", IMAGESEARCH_APP_SECRETS_FILE=str(secrets)))
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        app_pool(_settings(IMAGESEARCH_APP_KEYS="alpha", IMAGESEARCH_APP_SECRETS_FILE=str(tmp_path / "none")))
