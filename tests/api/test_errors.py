"""Every /api/ error has one JSON shape: ``{"detail", "parameter"}`` plus ``"choices"`` when the
parameter takes one of a list (catalog/api/errors.py). Pinned here for the rule API, unknown
paths, methods, authentication, request bodies and the sandbox; conversion errors are pinned
in tests/conversion/test_catalog.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache

from catalog.api.errors import error_body, first_error
from rules.evaluate import clear_evaluator_cache

pytestmark = pytest.mark.usefixtures("catalog")

LEVELS = ["informational", "low", "medium", "high", "critical"]


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The body of an error response, checked for the one shape."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) in ({"detail", "parameter"}, {"detail", "parameter", "choices"}), body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_a_bad_choice_names_the_parameter_and_its_choices(client: Any) -> None:
    body = error_of(client.get("/api/rules/", {"level": "urgent"}), 400)
    assert body["parameter"] == "level"
    assert "urgent" in body["detail"]
    assert sorted(body["choices"]) == sorted(LEVELS)


def test_a_bad_sort_lists_the_sort_keys(client: Any) -> None:
    body = error_of(client.get("/api/rules/", {"sort": "size"}), 400)
    assert body["parameter"] == "sort" and "title" in body["choices"]


def test_an_unknown_query_parameter_is_named(client: Any) -> None:
    body = error_of(client.get("/api/rules/", {"levle": "high"}), 400)
    assert body == {"detail": "Unknown query parameter.", "parameter": "levle"}


def test_a_bad_limit_is_named_without_choices(client: Any) -> None:
    body = error_of(client.get("/api/indicators/", {"limit": "many"}), 400)
    assert body == {"detail": "A whole number is required.", "parameter": "limit"}


@pytest.mark.parametrize("parameter", ["fires", "changed_since"])
@pytest.mark.parametrize("path", ["/api/rules/", "/api/attack/layer.json"])
def test_a_value_with_a_percent_sign_is_a_400_naming_it(
    client: Any, path: str, parameter: str
) -> None:
    # The filter's message quotes the value: a '%' in it once broke django-filter's
    # message % params formatting (500, found by schemathesis).
    body = error_of(client.get(path, {parameter: "%s%d 100%"}), 400)
    assert body["parameter"] == parameter


@pytest.mark.parametrize(
    "path", ["/api/rules/no-such-rule/", "/api/indicators/999999999/", "/api/no-such-thing/"]
)
def test_not_found_names_no_parameter(client: Any, path: str) -> None:
    body = error_of(client.get(path), 404)
    assert body["parameter"] is None


def test_a_method_not_allowed_names_no_parameter(client: Any, staff_client: Any) -> None:
    body = error_of(staff_client.delete("/api/rules/"), 405)
    assert body == {"detail": 'Method "DELETE" not allowed.', "parameter": None}


def test_authentication_errors_keep_their_header(client: Any) -> None:
    response = client.post("/api/imports/", {})
    body = error_of(response, 401)
    assert body["parameter"] is None and response["WWW-Authenticate"]


def test_an_unreadable_body_names_the_body(staff_client: Any) -> None:
    response = staff_client.post("/api/imports/", b"x", content_type="multipart/form-data")
    assert error_of(response, 400)["parameter"] == "body"


@pytest.fixture
def sandbox(settings: Any) -> Any:
    cache.clear()
    clear_evaluator_cache()
    yield
    clear_evaluator_cache()


@pytest.mark.parametrize(
    ("payload", "status", "expected"),
    [
        ("{", 400, {"parameter": "body"}),
        (
            {},
            400,
            {
                "parameter": "body",
                "detail": "give exactly one of 'scriptblock', 'event', 'events' or 'text'",
            },
        ),
        (
            {"scriptblock": 5},
            400,
            {"parameter": "scriptblock", "detail": "'scriptblock' must be a string"},
        ),
        (
            {"events": [{}, 1]},
            400,
            {"parameter": "events", "detail": "'events[1]' is not a JSON object"},
        ),
        (
            {"events": [{"a": 1}] * 10_001},
            413,
            {"parameter": "events", "detail": "'events' has 10,001 items; the limit is 10,000"},
        ),
        (
            {"scriptblock": "x", "explain": 1},
            400,
            {"parameter": "explain", "detail": "'explain' must be true or false"},
        ),
    ],
)
def test_sandbox_errors_have_the_shape(
    client: Any, sandbox: None, payload: Any, status: int, expected: dict[str, Any]
) -> None:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    response = client.post("/api/sandbox/", data, content_type="application/json")
    body = error_of(response, status)
    assert {key: body[key] for key in expected} == expected


def test_sandbox_throttle_has_the_shape(client: Any, sandbox: None, settings: Any) -> None:
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "sandbox": "1/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    for _ in range(2):
        response = client.post("/api/sandbox/", {"scriptblock": "Get-Date"}, format="json")
    body = error_of(response, 429)
    assert body["parameter"] is None and int(response["Retry-After"]) > 0


def test_sandbox_wrong_content_type_names_no_parameter(client: Any, sandbox: None) -> None:
    response = client.post("/api/sandbox/", "x", content_type="text/plain")
    assert error_of(response, 415)["parameter"] is None


def test_first_error_takes_the_first_parameter_and_message() -> None:
    assert first_error({"b": ["one", "two"], "a": ["three"]}) == ("b", "one")
    assert first_error({"events": {"3": ["bad"]}}) == ("events", "bad")
    assert first_error({"non_field_errors": ["whole"]}) == (None, "whole")
    assert first_error(["bare"]) == (None, "bare")


def test_error_body_lists_choices_only_when_there_are_some() -> None:
    assert error_body("x") == {"detail": "x", "parameter": None}
    assert error_body("x", "p", ["a"]) == {"detail": "x", "parameter": "p", "choices": ["a"]}
