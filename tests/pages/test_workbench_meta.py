"""/workbench/ with drafts of several documents (issue 16): a meta filter written from a
sandbox match, catalog correlations and filters opened whole, the documents section, and
correlation results that link what the catalog has and nothing the draft wrote.

The catalog holds examples/correlations (ids as in tests/sandbox/test_correlations.py) and a
regression sample for its bad-password rule."""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from django.urls import reverse

from catalog.models import Correlation
from tests.conftest import EXAMPLES
from tests.factories import (
    fresh_workbench,
    imported_for_module,
    rule_yaml,
    write_regression_sample,
    write_rule_files,
)

URL = "/workbench/"
CORRELATIONS = EXAMPLES / "correlations"
REPEATED = "bff2408b-ef2d-42f7-914e-dd9750613431"
CHAINED = "7d1e0dc5-82c8-4a31-8cd9-1164353fa70a"
BAD_PASSWORD = "112206ca-85cd-4a08-8657-d6febd1e1f04"
LOGON = "6eafe1dc-6700-4322-aa00-3d7d661f32ef"
CATALOG_FILTER = "fd027459-eb41-43ce-87b9-24127c4ffe45"

DRAFT_RULE_ID = "d0d0d0d0-0000-4000-8000-000000000001"
DRAFT_CORR_ID = "d0d0d0d0-0000-4000-8000-0000000000c1"
DRAFT_FILTER_ID = "d0d0d0d0-0000-4000-8000-0000000000f1"

ALICE_SAMPLE = {
    "Channel": "Security",
    "Provider_Name": "Microsoft-Windows-Security-Auditing",
    "EventID": 4625,
    "SubStatus": "0xc000006a",
    "TargetUserName": "alice",
    "WorkstationName": "WS07",
}
# Not covered by the catalog's filter (svc_health on JUMP01): only a draft filter suppresses it.
BOB = {**ALICE_SAMPLE, "TargetUserName": "bob"}


def example_events() -> list[dict[str, Any]]:
    lines = (CORRELATIONS / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def jsonl(events: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(e) for e in events)


DRAFT_RULE = rule_yaml(
    title="Draft Any Failed Logon",
    id=DRAFT_RULE_ID,
    name="wb_any_failure",
    status="test",
    description="Any failed logon (a draft rule)",
    author="tests",
    date="2026-12-01",
    logsource={"product": "windows", "service": "security"},
    detection="sel:\n    EventID: 4625\ncondition: sel",
    level="low",
)


def correlation(kind: str, rules: list[str], **section: Any) -> str:
    body = {"type": kind, "rules": rules, **section}
    document = {
        "title": f"Draft {kind} correlation",
        "id": DRAFT_CORR_ID,
        "status": "test",
        "correlation": body,
        "level": "medium",
    }
    return yaml.safe_dump(document, sort_keys=False)


def meta_filter(rules: list[str], selection: dict[str, Any]) -> str:
    document = {
        "title": "Draft Filter Of Bob",
        "id": DRAFT_FILTER_ID,
        "status": "test",
        "logsource": {"product": "windows", "service": "security"},
        "filter": {"rules": rules, "selection": selection, "condition": "not selection"},
    }
    return yaml.safe_dump(document, sort_keys=False)


def draft(*documents: str) -> str:
    return "---\n".join(doc if doc.endswith("\n") else doc + "\n" for doc in documents)


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


@pytest.fixture(scope="module")
def meta_catalog(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    from catalog.workbench import clear_workbench_cache

    root = tmp_path_factory.mktemp("corpus")
    write_regression_sample(root, "bad_password", BAD_PASSWORD, "Bad password", [ALICE_SAMPLE])
    other = rule_yaml(
        title="Other",
        id=str(uuid.UUID(int=9)),
        logsource={"product": "windows", "service": "security"},
        detection="s:\n    EventID: 9\ncondition: s",
    )
    folder = write_rule_files(root / "rules", {"other.yml": other})
    with imported_for_module(django_db_blocker, [folder, CORRELATIONS]) as report:
        assert not report.errors, report.errors
        clear_workbench_cache()
        yield root
        clear_workbench_cache()


@pytest.fixture(autouse=True)
def _catalog(meta_catalog: Path, db: None) -> Iterator[None]:
    yield from fresh_workbench()


def text_of(response: Any) -> str:
    return re.sub(r"\s+", " ", html.unescape(response.content.decode()))


def textarea(response: Any) -> str:
    found = re.search(
        r'<textarea id="workbench-rule"[^>]*>(.*?)</textarea>', response.content.decode(), re.S
    )
    assert found, "no draft textarea"
    return html.unescape(found.group(1))


def plain(fragment: str) -> str:
    """Text of an HTML fragment: tags dropped, entities read, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def section(response: Any, section_id: str) -> str:
    """The HTML of the <section id=...> (sections do not nest in the results)."""
    page = response.content.decode()
    start = page.find(f'id="{section_id}"')
    assert start >= 0, section_id
    return page[start : page.find("</section>", start)]


# ---------------------------------------------------------------- a filter from a match


def test_a_sandbox_match_offers_a_meta_filter(client: Client) -> None:
    response = client.post("/sandbox/", {"text": json.dumps(ALICE_SAMPLE), "kind": "json"})
    page = response.content.decode()
    assert "Exclude this…" in page and "As a meta filter…" in page
    form = page[page.index('name="tune_rule"') - 400 : page.index("As a meta filter…")]
    assert f'value="{BAD_PASSWORD}"' in form
    assert 'name="tune_as" value="filter"' in form


def tune_as_filter(client: Client, field: str, value: str, event: dict[str, Any]) -> Any:
    return client.post(
        URL,
        {
            "tune_rule": BAD_PASSWORD,
            "exclude_field": field,
            "exclude_value": value,
            "events": json.dumps(event),
            "tune_as": "filter",
        },
    )


def test_the_filter_flow_writes_a_filter_and_shows_the_suppression(client: Client) -> None:
    response = tune_as_filter(client, "TargetUserName", "bob", BOB)
    assert response.status_code == 200
    document = yaml.safe_load(textarea(response))
    assert "detection" not in document  # a filter document, not a tuned copy of the rule
    assert document["filter"] == {
        "rules": [BAD_PASSWORD],
        "selection": {"TargetUserName": "bob"},
        "condition": "not selection",
    }
    assert document["logsource"] == {"product": "windows", "service": "security"}
    uuid.UUID(document["id"])
    page = text_of(response)
    assert "A new meta filter for" in page
    assert "suppressed by filter Suppress Interactive or Network Logon Failed" in page
    tuning = plain(section(response, "wb-tune-h"))
    assert "suppressed" in tuning and "The event's match is suppressed by the filter" in tuning
    assert "(1 suppression)" in tuning
    # The rule's own sample (alice) has another account: it still fires with the filter.
    assert "1 of 1 still fire" in tuning


def test_a_filter_that_does_not_cover_the_event_says_it_still_matches(client: Client) -> None:
    response = tune_as_filter(client, "TargetUserName", "someone_else", BOB)
    tuning = plain(section(response, "wb-tune-h"))
    assert "still matches" in tuning and "suppressed by the filter (" not in tuning


def test_a_too_broad_filter_says_the_sample_is_suppressed(client: Client) -> None:
    response = tune_as_filter(client, "EventID", "4625", BOB)
    tuning = plain(section(response, "wb-tune-h"))
    assert "0 of 1 still fire" in tuning and "suppressed by the filter (all 1)" in tuning


def test_a_filter_value_is_a_literal_not_a_wildcard(client: Client) -> None:
    # "b*" written from a match means the value b*, not every account starting with b.
    response = tune_as_filter(client, "TargetUserName", "b*", BOB)
    document = yaml.safe_load(textarea(response))
    assert document["filter"]["selection"] == {"TargetUserName": "b\\*"}
    assert "still matches" in plain(section(response, "wb-tune-h"))
    starred = tune_as_filter(client, "TargetUserName", "b*", {**BOB, "TargetUserName": "b*"})
    assert "The event's match is suppressed" in plain(section(starred, "wb-tune-h"))


# ------------------------------------------------------------------- opening catalog files


def test_open_a_catalog_correlation_opens_its_whole_file(client: Client) -> None:
    response = client.get(URL, {"correlation": REPEATED})
    assert response.status_code == 200
    opened = textarea(response)
    assert opened == Correlation.objects.get(correlation_id=REPEATED).raw_yaml
    for title in (
        "Interactive or Network Logon Failed Because of a Bad Password",
        "Logon Succeeded for an Account",
        "Repeated Bad Password Logons for One Account",
        "Successful Logon After Repeated Bad Passwords",
    ):
        assert f"title: {title}" in opened
    page = text_of(response)
    assert "The file of the catalog correlation" in page
    assert reverse("catalog:correlation-detail", args=[REPEATED]) in page
    documents = section(response, "wb-documents")
    assert documents.count('class="badge neutral">rule<') == 2
    assert documents.count('class="badge neutral">correlation<') == 2


def test_open_a_catalog_filter_opens_its_file(client: Client) -> None:
    response = client.get(URL, {"filter": CATALOG_FILTER})
    assert response.status_code == 200
    opened = textarea(response)
    assert (
        opened.strip()
        == (CORRELATIONS / "filter_jump_host_password_failures.yml").read_text().strip()
    )
    page = text_of(response)
    assert "The file of the catalog filter" in page
    assert reverse("catalog:filter-detail", args=[CATALOG_FILTER]) in page
    # The filter names a catalog rule: evaluated with the draft, and linked.
    documents = section(response, "wb-documents")
    assert reverse("catalog:rule-detail", args=[BAD_PASSWORD]) in documents


@pytest.mark.parametrize("key", ["correlation", "filter"])
def test_an_unknown_id_says_so_and_starts_from_the_template(client: Client, key: str) -> None:
    response = client.get(URL, {key: "no-such-id"})
    assert response.status_code == 200
    assert f"No catalog {key} has the id 'no-such-id'; starting from the template." in text_of(
        response
    )
    assert "detection:" in textarea(response)


def test_the_correlation_and_filter_pages_link_to_the_workbench(client: Client) -> None:
    page = client.get(reverse("catalog:correlation-detail", args=[REPEATED])).content.decode()
    assert f'href="/workbench/?correlation={REPEATED}"' in page
    assert "Open in workbench" in page
    page = client.get(reverse("catalog:filter-detail", args=[CATALOG_FILTER])).content.decode()
    assert f'href="/workbench/?filter={CATALOG_FILTER}"' in page


# ------------------------------------------------------------------------ the documents


def test_the_documents_section_lists_the_documents_with_their_lines(client: Client) -> None:
    corr = correlation("event_count", ["wb_any_failure"], timespan="5m", condition={"gte": 3})
    flt = meta_filter(["bad_password_logon"], {"TargetUserName": "bob"})
    text = draft(DRAFT_RULE, corr, flt)
    response = client.post(URL, {"rule": text})
    assert response.status_code == 200
    documents = section(response, "wb-documents")
    rows = re.findall(
        r'data-goto="(\d+):1">\d+</a></td>\s*<td data-label="Kind"><span class="badge neutral">'
        r'(\w+)</span></td>\s*<td data-label="Title">([^<]*)</td>',
        documents,
    )
    assert rows == [
        ("1", "rule", "Draft Any Failed Logon"),
        (
            str(line_of(text, "title: Draft event_count")),
            "correlation",
            "Draft event_count correlation",
        ),
        (str(line_of(text, "title: Draft Filter Of Bob")), "filter", "Draft Filter Of Bob"),
    ]
    assert "3 documents (1 rule, 1 correlation, 1 filter)" in text_of(response)
    # What they name: the draft's rule unlinked, the catalog rule linked.
    assert '<li>Draft Any Failed Logon <span class="muted">(the draft)</span></li>' in documents
    assert reverse("catalog:rule-detail", args=[BAD_PASSWORD]) in documents
    assert reverse("catalog:rule-detail", args=[DRAFT_RULE_ID]) not in documents


def test_a_plain_rule_has_no_documents_section(client: Client) -> None:
    response = client.post(URL, {"rule": DRAFT_RULE})
    assert response.status_code == 200
    assert 'id="wb-documents"' not in response.content.decode()


# ------------------------------------------------------------------ results and their links


def test_correlation_results_link_catalog_documents_only(client: Client) -> None:
    corr = correlation(
        "temporal",
        ["repeated_bad_passwords", "account_logon_success"],
        **{"group-by": ["TargetUserName"]},
        timespan="10m",
    )
    examples = example_events()
    events = [*examples[:9], examples[15]]
    response = client.post(URL, {"rule": corr, "events": jsonl(events)})
    assert response.status_code == 200
    tests = section(response, "wb-tests")
    plain = re.sub(r"\s+", " ", html.unescape(tests))
    # The catalog correlation the draft chains on: linked.
    assert f'href="{reverse("catalog:correlation-detail", args=[REPEATED])}"' in tests
    # The draft's own correlation: named, not linked (the catalog has no page for it).
    assert (
        '<strong>Draft temporal correlation</strong> <span class="muted small">(the draft)</span>'
        in tests
    )
    assert (
        reverse("catalog:correlation-detail", args=[DRAFT_CORR_ID]) not in response.content.decode()
    )
    # Matches of catalog rules link to their pages.
    assert f'href="{reverse("catalog:rule-detail", args=[BAD_PASSWORD])}"' in tests
    assert "2 correlation matches" in text_of(response)
    assert "Repeated Bad Password Logons for One Account" in plain


def test_draft_filter_suppressions_link_the_catalog_rule_not_the_draft_filter(
    client: Client,
) -> None:
    flt = meta_filter(["bad_password_logon"], {"TargetUserName": "bob"})
    text = draft(DRAFT_RULE, flt)
    events = example_events()[5:9]  # bob's four failures
    response = client.post(URL, {"rule": text, "events": jsonl(events)})
    assert response.status_code == 200
    tests = section(response, "wb-tests")
    plain = re.sub(r"\s+", " ", html.unescape(tests))
    assert plain.count("suppressed by filter Draft Filter Of Bob") == 4
    assert "(the draft's filter)" in plain
    assert reverse("catalog:filter-detail", args=[DRAFT_FILTER_ID]) not in tests
    assert f'href="{reverse("catalog:rule-detail", args=[BAD_PASSWORD])}"' in tests
    # The draft's own rule still matches bob's events, shown as the draft's.
    assert plain.count("<strong>Draft Any Failed Logon</strong>") == 4
    assert reverse("catalog:rule-detail", args=[DRAFT_RULE_ID]) not in tests


def test_a_broken_document_is_shown_inline_with_its_line(client: Client) -> None:
    corr = correlation("event_count", ["no_such_rule"], timespan="5m", condition={"gte": 3})
    text = draft(DRAFT_RULE, corr)
    response = client.post(URL, {"rule": text})
    page = text_of(response)
    assert f"line {line_of(text, 'title: Draft event_count')}" in page.lower()
    assert "no_such_rule" in page


def test_a_too_long_timestamp_field_is_refused(client: Client) -> None:
    corr = correlation("event_count", ["wb_any_failure"], timespan="5m", condition={"gte": 3})
    response = client.post(
        URL,
        {
            "rule": draft(DRAFT_RULE, corr),
            "events": jsonl(example_events()[:5]),
            "timestamp_field": "x" * 300,
        },
    )
    assert "the timestamp field is limited to 200 characters" in text_of(response)


def test_the_timestamp_field_is_kept_and_used(client: Client) -> None:
    corr = correlation("event_count", ["wb_any_failure"], timespan="5m", condition={"gte": 3})
    text = draft(DRAFT_RULE, corr)
    events = jsonl(example_events()[:5])
    found = client.post(URL, {"rule": text, "events": events})
    assert "1 correlation match" in text_of(found)
    response = client.post(URL, {"rule": text, "events": events, "timestamp_field": "seen"})
    page = text_of(response)
    assert 'name="timestamp_field" maxlength="200" value="seen"' in page
    assert "0 correlation matches" in page


@pytest.mark.parametrize("query", ["rule=%00", "correlation=%00x", "filter=a%00"])
def test_a_nul_in_an_opened_id_is_not_a_server_error(client: Client, query: str) -> None:
    # PostgreSQL refuses NUL in a text value: the id is looked up without it (CI runs this on
    # PostgreSQL, where it was a 500).
    response = client.get(f"/workbench/?{query}")
    assert response.status_code == 200
    assert 'id="workbench-rule"' in response.content.decode()  # the template opens


def test_a_nul_in_a_tuned_rule_id_is_not_a_server_error(client: Client) -> None:
    response = client.post(
        "/workbench/", {"tune_rule": "\x00", "exclude_field": "User", "exclude_value": "x"}
    )
    assert response.status_code == 400
