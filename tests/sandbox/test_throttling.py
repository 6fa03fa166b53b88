"""Findings 3, 4 and 9: throttles count people (not headers), the page and the API share one
limit, heavy requests have a per-client and a per-process cap, /admin/ sign-in is throttled."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import RequestFactory

from catalog.services import import_rules
from catalog.throttling import client_address, heavy_slot
from rules.evaluate import clear_evaluator_cache
from tests.conftest import EXAMPLES


@pytest.fixture(autouse=True)
def _fresh_state() -> Any:
    cache.clear()
    clear_evaluator_cache()
    yield
    cache.clear()
    clear_evaluator_cache()


@pytest.fixture
def examples(db: None) -> None:
    report = import_rules([str(EXAMPLES / "rules")], rule_set="examples")
    assert report.created == 17


@pytest.fixture
def rate(settings: Any) -> Any:
    def set_rate(value: str) -> None:
        rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "sandbox": value}
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}

    return set_rate


def api(client: Any, body: Any, **extra: Any) -> Any:
    return client.post("/api/sandbox/", json.dumps(body), content_type="application/json", **extra)


# -- the client address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.1"),  # default: the header is ignored
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # one proxy appended the client's address
        (2, "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),
        (2, "1.2.3.4", "1.2.3.4"),  # fewer entries than hops: the leftmost there is
        (1, "not-an-address", "10.0.0.1"),
        (1, "", "10.0.0.1"),
    ],
)
def test_client_address_trusts_only_the_configured_proxies(
    settings: Any, proxies: int, forwarded: str, expected: str
) -> None:
    settings.TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def test_rotating_x_forwarded_for_does_not_bypass_the_api_throttle(
    client: Any, examples: None, rate: Any
) -> None:
    rate("3/min")
    codes = [
        api(client, {"scriptblock": "Get-Date"}, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
        for i in range(6)
    ]
    assert codes == [200, 200, 200, 429, 429, 429]


def test_with_one_trusted_proxy_clients_behind_it_count_apart(
    client: Any, examples: None, rate: Any, settings: Any
) -> None:
    settings.TRUSTED_PROXIES = 1
    rate("2/min")
    first = [api(client, {"scriptblock": "x"}, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code
             for _ in range(3)]  # fmt: skip
    other = api(client, {"scriptblock": "x"}, HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert first == [200, 200, 429]
    assert other.status_code == 200


def test_the_page_and_the_api_share_one_limit(client: Any, examples: None, rate: Any) -> None:
    rate("3/min")
    assert api(client, {"scriptblock": "Get-Date"}).status_code == 200
    assert client.post("/sandbox/", {"text": "Get-Date"}).status_code == 200
    assert api(client, {"scriptblock": "Get-Date"}).status_code == 200
    page = client.post("/sandbox/", {"text": "Get-Date"})
    assert page.status_code == 429
    assert int(page["Retry-After"]) > 0
    assert "Too many evaluations" in page.content.decode()
    assert api(client, {"scriptblock": "Get-Date"}).status_code == 429


# -- heavy requests ------------------------------------------------------------------------------


def many_events() -> dict[str, Any]:
    return {"events": [{"ScriptBlockText": "Get-Date", "EventID": 4104}] * 3}


def test_a_client_with_its_heavy_slots_taken_gets_429_at_once(
    client: Any, examples: None, settings: Any
) -> None:
    settings.HEAVY_PER_CLIENT = 1
    request = RequestFactory().post("/", REMOTE_ADDR="127.0.0.1")
    with heavy_slot(request, "sandbox", process_cap=False):
        refused = api(client, many_events())
        page = client.post("/sandbox/", {"text": json.dumps(many_events()["events"])})
        light = api(client, {"scriptblock": "Get-Date"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["parameter"] is None and "heavy" in refused.json()["detail"]
    assert page.status_code == 429 and int(page["Retry-After"]) > 0
    assert light.status_code == 200, "a small scriptblock is not heavy"
    assert api(client, many_events()).status_code == 200, "the slot is given back"


def test_a_crashed_request_cannot_lock_a_client_out(
    client: Any, examples: None, settings: Any
) -> None:
    settings.HEAVY_PER_CLIENT = 1
    settings.HEAVY_SLOT_SECONDS = 1
    request = RequestFactory().post("/", REMOTE_ADDR="127.0.0.1")
    leaked = heavy_slot(request, "sandbox", process_cap=False)
    leaked.__enter__()  # never exited: a worker killed mid-request
    assert api(client, many_events()).status_code == 429
    time.sleep(2.1)
    assert api(client, many_events()).status_code == 200


def test_the_process_cap_refuses_excess_heavy_evaluations_quickly(
    client: Any, examples: None, settings: Any
) -> None:
    settings.HEAVY_PER_PROCESS = 1
    other = RequestFactory().post("/", REMOTE_ADDR="192.0.2.50")
    with heavy_slot(other, "sandbox"):  # another client's evaluation is running
        refused = api(client, many_events())
    assert refused.status_code == 503 and int(refused["Retry-After"]) > 0
    assert "busy" in refused.json()["detail"]
    assert api(client, many_events()).status_code == 200


def test_a_body_over_the_synchronous_cap_points_at_the_job_upload(
    client: Any, examples: None
) -> None:
    big = json.dumps({"scriptblock": "a" * (2 * 1024 * 1024 + 10)})
    response = client.post("/api/sandbox/", big, content_type="application/json")
    assert response.status_code == 413
    assert "job" in response.json()["detail"]


# -- admin sign-in -------------------------------------------------------------------------------


@pytest.fixture
def staff(db: None) -> Any:
    return get_user_model().objects.create_user("admin-x", password="right-pass-42", is_staff=True)


def sign_in(client: Any, username: str, password: str, address: str = "127.0.0.1") -> Any:
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def test_admin_sign_in_is_refused_after_five_failures(client: Any, staff: Any) -> None:
    codes = [sign_in(client, "admin-x", f"wrong-{i}").status_code for i in range(5)]
    assert codes == [200] * 5  # the form again, with its error
    sixth = sign_in(client, "admin-x", "right-pass-42")
    assert sixth.status_code == 429
    assert int(sixth["Retry-After"]) > 0
    assert "Too many failed sign-in attempts" in sixth.content.decode()


def test_admin_sign_in_throttle_counts_the_username_across_addresses(
    client: Any, staff: Any
) -> None:
    for i in range(5):
        sign_in(client, "admin-x", "wrong", address=f"192.0.2.{i + 1}")
    assert sign_in(client, "admin-x", "wrong", address="192.0.2.99").status_code == 429
    # Another user from a fresh address still signs in.
    get_user_model().objects.create_user("other", password="other-pass-42", is_staff=True)
    assert sign_in(client, "other", "other-pass-42", address="192.0.2.100").status_code == 302


def test_admin_sign_in_succeeds_below_the_limit(client: Any, staff: Any) -> None:
    for _ in range(3):
        sign_in(client, "admin-x", "wrong")
    assert sign_in(client, "admin-x", "right-pass-42").status_code == 302


def test_conversion_export_holds_a_heavy_slot_while_it_streams(
    client: Any, examples: None, settings: Any
) -> None:
    settings.HEAVY_PER_CLIENT = 1
    first = client.get("/api/convert/export/?target=splunk")
    assert first.status_code == 200
    second = client.get("/api/convert/export/?target=splunk")  # the first is still open
    assert second.status_code == 429 and int(second["Retry-After"]) > 0
    b"".join(first.streaming_content)
    first.close()
    third = client.get("/api/convert/export/?target=splunk")
    assert third.status_code == 200
    third.close()


def test_a_large_body_is_refused_before_it_is_parsed_while_the_process_is_busy(
    client: Any, examples: None, settings: Any, monkeypatch: Any
) -> None:
    settings.HEAVY_PER_PROCESS = 1
    from catalog.api import sandbox as sandbox_api

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the body of a refused request was parsed")

    other = RequestFactory().post("/", REMOTE_ADDR="192.0.2.51")
    with heavy_slot(other, "sandbox"), monkeypatch.context() as patch:
        patch.setattr(sandbox_api.SandboxJSONParser, "parse", never)
        refused = api(client, {"scriptblock": "x" * (70 * 1024)})
    assert refused.status_code == 503 and int(refused["Retry-After"]) > 0
    assert "busy" in refused.json()["detail"]
    assert api(client, {"scriptblock": "x" * (70 * 1024)}).status_code == 200
