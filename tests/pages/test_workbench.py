"""/workbench/ without JavaScript: open a rule, analyse a draft, inline parse errors, the tune
flow from a sandbox match, download, saved private drafts."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from catalog.models import Draft
from catalog.workbench import MAX_RULE_CHARS
from tests.factories import (
    WINDOWS_PROCESS_CREATION,
    fresh_workbench,
    imported_rules_for_module,
    rule_yaml,
    write_regression_sample,
)

URL = "/workbench/"
RULE_ID = "b1b2c3d4-0000-4000-8000-000000000001"
SYSMON_1 = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}
SAMPLE_EVENT = {
    **SYSMON_1,
    "Image": "C:\\Windows\\System32\\whoami.exe",
    "CommandLine": "whoami /all",
}
ADMIN_EVENT = {**SAMPLE_EVENT, "User": "CORP\\helpdesk"}


def whoami(rule_id: str = RULE_ID, extra: str = "") -> str:
    return rule_yaml(
        title="Whoami all",
        id=rule_id,
        status="test",
        description="Whoami with /all",
        author="tests",
        date="2026-01-01",
        logsource=WINDOWS_PROCESS_CREATION,
        detection="""
selection:
    Image|endswith: '\\whoami.exe'
    CommandLine|contains: '/all'
condition: selection
""",
        level="medium",
        extra=extra,
    )


@pytest.fixture(scope="module")
def workbench_catalog(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("corpus")
    sample = write_regression_sample(root, "whoami", RULE_ID, "Whoami all", [SAMPLE_EVENT])
    rules = {"whoami.yml": whoami(extra=f"regression_tests_path: {sample}\n")}
    with imported_rules_for_module(django_db_blocker, root, rules):
        yield root


@pytest.fixture(autouse=True)
def _catalog(workbench_catalog: Path, db: None) -> Iterator[None]:
    yield from fresh_workbench()


def text_of(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def test_empty_workbench_has_a_template_and_its_analysis(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 200
    page = text_of(response)
    assert 'name="rule"' in page and "title: Suspicious Whoami Execution" in page
    assert "Checks" in page and "Overlap with the catalog" in page and "Indicators" in page


def test_open_in_workbench_link_on_the_rule_page(client: Client) -> None:
    page = client.get(f"/rules/{RULE_ID}/").content.decode()
    assert f'href="/workbench/?rule={RULE_ID}"' in page


def test_open_a_catalog_rule_shows_a_copy_with_backtest(client: Client) -> None:
    page = text_of(client.get(URL, {"rule": RULE_ID}))
    assert "A copy of" in page and "Whoami all" in page
    assert "regression_data/rules/whoami/info.yml" in page and "fires" in page


def test_posting_a_copy_with_a_new_id_flags_the_duplicate(client: Client) -> None:
    response = client.post(URL, {"rule": whoami(str(uuid.uuid4())), "backtest": "on"})
    assert response.status_code == 200
    page = text_of(response)
    assert "Exact duplicate" in page and f'href="/rules/{RULE_ID}/"' in page
    assert "Conversion" in page and "splunk" in page


def test_parse_errors_are_inline_with_line_and_column(client: Client) -> None:
    text = whoami(str(uuid.uuid4())).replace("condition: selection", "condition: selection or x")
    response = client.post(URL, {"rule": text})
    assert response.status_code == 400
    page = text_of(response)
    written = "    condition: selection or x"
    line = text.splitlines().index(written) + 1
    assert f"Line {line}, column {written.rindex('x') + 1}" in page and "Hint:" in page
    assert "selection or x" in page  # the draft stays in the editor


def test_unknown_modifier_inline(client: Client) -> None:
    text = whoami(str(uuid.uuid4())).replace("contains", "contain")
    page = text_of(client.post(URL, {"rule": text}))
    assert "Unknown modifier" in page and "did you mean" in page


def test_tests_on_pasted_events_render_the_explanation(client: Client) -> None:
    response = client.post(URL, {"rule": whoami(), "events": json.dumps(SAMPLE_EVENT)})
    page = text_of(response)
    assert "Tests" in page and "Predicates that decided it" in page and "(the draft)" in page
    assert "{#" not in page and "{%" not in page  # no template comment leaks into the page


def test_sandbox_match_offers_exclude_and_the_tune_flow_reports(client: Client) -> None:
    sandbox = client.post(
        "/sandbox/", {"text": json.dumps(ADMIN_EVENT), "kind": "json", "rule_id": RULE_ID}
    )
    assert "Exclude this…" in sandbox.content.decode()
    response = client.post(
        URL,
        {
            "tune_rule": RULE_ID,
            "exclude_field": "CommandLine",
            "exclude_value": "whoami /all",
            "events": json.dumps(ADMIN_EVENT),
        },
    )
    page = text_of(response)
    assert response.status_code == 200
    assert "filter_optional_workbench:" in page and "not 1 of filter_*" in page
    assert "no longer matches" in page
    # The rule's own sample has the same command line: it is excluded too, and the page says so.
    assert "0 of 1 still match" in page


def test_tune_with_a_field_the_sample_does_not_share_keeps_the_sample(client: Client) -> None:
    response = client.post(
        URL,
        {
            "tune_rule": RULE_ID,
            "exclude_field": "User",
            "exclude_value": "CORP\\helpdesk",
            "events": json.dumps(ADMIN_EVENT),
        },
    )
    page = text_of(response)
    assert "The excluded event no longer matches" in page and "1 of 1 still match" in page


def test_download_returns_the_draft_as_yml(client: Client) -> None:
    response = client.post(URL, {"rule": whoami(), "action": "download"})
    assert response["Content-Disposition"] == 'attachment; filename="whoami_all.yml"'
    assert response.content.decode() == whoami()


def test_too_large_and_empty_drafts_are_refused(client: Client) -> None:
    assert client.post(URL, {"rule": "x" * (MAX_RULE_CHARS + 1)}).status_code == 413
    assert client.post(URL, {"rule": "  "}).status_code == 400
    assert client.post(URL, {"rule": whoami(), "events": "{x", "kind": "json"}).status_code == 400


def test_fragment_is_only_the_results(client: Client) -> None:
    response = client.post(URL + "?fragment=1", {"rule": whoami(), "live": "1"})
    page = response.content.decode()
    assert "<html" not in page and "Overlap with the catalog" in page
    assert "live updates skip them" in page


def test_saved_drafts_are_private(client: Client) -> None:
    users = get_user_model().objects
    alice, bob = users.create_user("alice", password="x" * 12), users.create_user("bob")
    client.force_login(alice)
    response = client.post("/workbench/drafts/", {"rule": whoami()})
    assert response.status_code == 303
    draft = Draft.objects.get(owner=alice)
    assert response["Location"] == f"/workbench/?draft={draft.pk}"
    page = text_of(client.get(response["Location"]))
    assert "Your saved draft" in page and "last saved" in page and "Whoami all" in page
    # Saving again with the draft's id updates it.
    client.post("/workbench/drafts/", {"rule": whoami() + "# v2\n", "draft": draft.pk})
    assert Draft.objects.get(pk=draft.pk).text.endswith("# v2\n")
    other = Client()
    other.force_login(bob)
    assert "last saved" not in text_of(other.get(URL, {"draft": draft.pk}))
    assert other.post(f"/workbench/drafts/{draft.pk}/delete/").status_code == 404
    assert client.post(f"/workbench/drafts/{draft.pk}/delete/").status_code == 303
    assert not Draft.objects.exists()


def test_saving_needs_a_signed_in_user(client: Client) -> None:
    response = client.post("/workbench/drafts/", {"rule": whoami()})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert "Sign in" in text_of(client.get(URL))


def test_a_user_signs_in_and_out_around_the_workbench(client: Client) -> None:
    get_user_model().objects.create_user("carol", password="correct horse battery")
    page = text_of(client.get("/accounts/login/", {"next": URL}))
    assert "Sign in" in page and 'name="password"' in page
    response = client.post(
        "/accounts/login/",
        {"username": "carol", "password": "correct horse battery", "next": URL},
    )
    assert response.status_code == 302 and response["Location"] == URL
    assert "Signed in as carol" in text_of(client.get(URL))
    assert client.post("/accounts/logout/")["Location"] == URL
    wrong = client.post("/accounts/login/", {"username": "carol", "password": "nope"})
    assert wrong.status_code == 200 and "correct username and password" in wrong.content.decode()


def test_the_site_sign_in_shares_the_admin_failure_limit(client: Client, settings: Any) -> None:
    settings.LOGIN_FAILURE_LIMIT = 2
    get_user_model().objects.create_user("dave", password="correct horse battery")
    for _ in range(2):
        client.post("/accounts/login/", {"username": "dave", "password": "wrong"})
    refused = client.post("/accounts/login/", {"username": "dave", "password": "wrong"})
    assert refused.status_code == 429 and refused["Retry-After"]


def test_exclude_from_the_rule_page(client: Client) -> None:
    page = client.get(f"/rules/{RULE_ID}/").content.decode()
    assert 'name="tune_rule"' in page and "Exclude a value…" in page
    response = client.post(
        URL, {"tune_rule": RULE_ID, "exclude_field": "User", "exclude_value": "CORP\\helpdesk"}
    )
    text = text_of(response)
    assert "Tuning" in text and "No event was given" in text and "1 of 1 still match" in text
