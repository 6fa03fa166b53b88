"""``manage.py check --deploy`` is clean under the documented production environment."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.production.conftest import REPO

# README "Production": DEBUG=0, SECRET_KEY, ALLOWED_HOSTS and the TLS variables.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "k7Qv2-pR9xZs4Lm8Nw3Tb6Yc1Hd5Fg0Jh2Kl9Pq4Rs7Tu1Vw5Xy8Za3Bc6De0Fg",
    "ALLOWED_HOSTS": "catalog.example.org",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "BEHIND_TLS_PROXY": "1",
}


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process (Playwright's sync API
    # runs an event loop); a production environment never has it.
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    base.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_has_no_warnings_in_production_environment():
    result = run_check(PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_a_missing_secret_key():
    """Without SECRET_KEY the built-in development key must not pass as a production key."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = run_check(env)
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def test_check_deploy_flags_missing_tls_settings():
    env = {k: PRODUCTION_ENV[k] for k in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    result = run_check(env)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    for code in ("W004", "W008", "W012", "W016"):
        assert f"security.{code}" in out, out
