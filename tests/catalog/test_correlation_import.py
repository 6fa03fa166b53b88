"""Importing correlation and filter documents: multi-document files, references by id and by
name, chains, unresolved references, re-import and prune."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Correlation, CorrelationReference, MetaFilter, Rule
from catalog.services import import_rules
from tests.conftest import EXAMPLES
from tests.factories import rule_yaml, write_rule_files

CORRELATIONS = EXAMPLES / "correlations"
BAD_PASSWORD = "112206ca-85cd-4a08-8657-d6febd1e1f04"
LOGON = "6eafe1dc-6700-4322-aa00-3d7d661f32ef"
REPEATED = "bff2408b-ef2d-42f7-914e-dd9750613431"
CHAINED = "7d1e0dc5-82c8-4a31-8cd9-1164353fa70a"
FILTER = "fd027459-eb41-43ce-87b9-24127c4ffe45"
BASE_ID = "0b7f0a4e-8a3c-4d4e-9a55-3a8d7c3e1f01"
CORR_ID = "0b7f0a4e-8a3c-4d4e-9a55-3a8d7c3e1f02"


def correlation_text(refs: str, *, ident: str = CORR_ID, extra: str = "") -> str:
    return f"""title: Many events
id: {ident}
correlation:
    type: event_count
    rules: {refs}
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 3
{extra}"""


def base_rule(name: str = "base_rule") -> str:
    return rule_yaml(
        title="Base rule",
        id=BASE_ID,
        name=name,
        logsource={"product": "windows", "category": "process_creation"},
        detection="sel:\n    Image|endswith: '\\x.exe'\ncondition: sel",
    )


@pytest.mark.django_db
def test_examples_import_rules_correlations_and_filters() -> None:
    report = import_rules([str(CORRELATIONS)])
    assert report.errors == []
    # 4 rules from multi-document files, 4 correlations, 1 filter
    assert Rule.objects.count() == 4
    assert Correlation.objects.count() == 4
    assert MetaFilter.objects.count() == 1
    assert report.created == 9
    rule = Rule.objects.get(rule_id=BAD_PASSWORD)
    assert rule.source_path.endswith("mr_password_guessing_then_logon.yml#1")
    repeated = Correlation.objects.get(correlation_id=REPEATED)
    assert (repeated.type, repeated.timespan, repeated.group_by) == (
        "event_count",
        "5m",
        ["TargetUserName"],
    )
    assert repeated.condition == {"gte": 5}
    [ref] = repeated.refs.all()
    assert (ref.reference, ref.rule_id) == ("bad_password_logon", rule.pk)
    chained = Correlation.objects.get(correlation_id=CHAINED)
    refs = list(chained.refs.order_by("position"))
    assert refs[0].target == repeated and refs[0].rule is None
    assert refs[1].rule.rule_id == LOGON
    flt = MetaFilter.objects.get(filter_id=FILTER)
    assert list(flt.rules.values_list("rule_id", flat=True)) == [BAD_PASSWORD]
    assert (flt.product, flt.service, flt.condition) == ("windows", "security", "not selection")


@pytest.mark.django_db
def test_reimport_is_unchanged_and_prune_removes_documents(tmp_path: Path) -> None:
    import_rules([str(CORRELATIONS)])
    again = import_rules([str(CORRELATIONS)])
    assert (again.created, again.updated, again.errors) == (0, 0, [])
    assert again.unchanged == 9
    folder = write_rule_files(tmp_path / "only", {"base.yml": base_rule()})
    import_rules([str(folder)], prune=True)
    assert Correlation.objects.count() == 0 and MetaFilter.objects.count() == 0


@pytest.mark.django_db
def test_references_resolve_by_id_and_by_name_across_files(tmp_path: Path) -> None:
    write_rule_files(tmp_path / "a", {"base.yml": base_rule()})
    import_rules([str(tmp_path / "a")])
    write_rule_files(
        tmp_path / "b",
        {
            "by_name.yml": correlation_text("[base_rule]"),
            "by_id.yml": correlation_text(f"[{BASE_ID}]", ident=BASE_ID[:-2] + "03"),
        },
    )
    report = import_rules([str(tmp_path / "b")])
    assert report.errors == []
    pk = Rule.objects.get(rule_id=BASE_ID).pk
    assert set(CorrelationReference.objects.values_list("rule_id", flat=True)) == {pk}


@pytest.mark.django_db
def test_a_file_with_windows_line_endings_imports_its_documents(tmp_path: Path) -> None:
    # "$" does not match before "\r": the separator must still split a CRLF file.
    text = base_rule() + "---\n" + correlation_text("[base_rule]")
    folder = tmp_path / "crlf"
    folder.mkdir()
    (folder / "mr_crlf.yml").write_bytes(text.replace("\n", "\r\n").encode())
    report = import_rules([str(folder)])
    assert report.errors == []
    assert Rule.objects.filter(rule_id=BASE_ID).exists()
    assert Correlation.objects.filter(correlation_id=CORR_ID).exists()


@pytest.mark.django_db
def test_unresolved_reference_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_rule_files(tmp_path, {"mr_bad.yml": correlation_text("[no_such_rule, other]")})
    report = import_rules([str(folder)])
    [error] = report.errors
    assert error.code == "unresolved-reference"
    assert "no_such_rule, other" in error.error and "not in the catalog" in error.error
    assert Correlation.objects.count() == 0


@pytest.mark.django_db
def test_invalid_correlation_is_refused_with_its_reason(tmp_path: Path) -> None:
    text = correlation_text("[base_rule]").replace("10m", "ten minutes")
    folder = write_rule_files(tmp_path, {"base.yml": base_rule(), "mr.yml": text})
    report = import_rules([str(folder)])
    [error] = report.errors
    assert error.code == "bad-correlation" and "Timespan" in error.error
    assert Rule.objects.count() == 1


@pytest.mark.django_db
def test_filter_with_unresolved_rule_is_refused(tmp_path: Path) -> None:
    text = f"""title: F
id: {CORR_ID}
logsource:
    product: windows
filter:
    rules:
        - missing_rule
    selection:
        User: x
    condition: not selection
"""
    report = import_rules([str(write_rule_files(tmp_path, {"f.yml": text}))])
    assert [e.code for e in report.errors] == ["unresolved-reference"]
    assert MetaFilter.objects.count() == 0


@pytest.mark.django_db
def test_multi_document_file_without_correlation_is_still_refused(tmp_path: Path) -> None:
    # Only files holding a correlation or filter are split; several plain rules in one file
    # stay a "not-a-rule" refusal, as before (tests/catalog/test_importer.py).
    second = base_rule().replace(BASE_ID, BASE_ID[:-2] + "09").replace("Base rule", "Second")
    folder = write_rule_files(tmp_path, {"two.yml": base_rule() + "---\n" + second})
    report = import_rules([str(folder)])
    assert [e.code for e in report.errors] == ["not-a-rule"] and report.created == 0


BOMB = "\n".join(
    ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "code"),
    [
        (correlation_text("[base_rule]") + "---\n" + BOMB, "unsafe-document"),
        ("\n".join(correlation_text("[base_rule]") for _ in range(101)), "too-many"),
        (correlation_text("[base_rule]").replace("- User", "a: b"), "bad-correlation"),
        (correlation_text("[base_rule]", extra="    generate: maybe\n"), "bad-correlation"),
    ],
    ids=["alias-bomb", "too-many-documents", "group-by-mapping", "generate-not-bool"],
)
def test_hostile_correlation_files_are_refused(tmp_path: Path, text: str, code: str) -> None:
    text = text.replace("title: Many events", "---\ntitle: Many events")
    folder = write_rule_files(tmp_path, {"base.yml": base_rule(), "mr.yml": text})
    report = import_rules([str(folder)])
    assert [e.code for e in report.errors] == [code], report.errors
    assert Rule.objects.count() == 1 and Correlation.objects.count() == 0


# -- pages ------------------------------------------------------------------------------------


@pytest.fixture
def imported(db: None, settings: Any) -> None:
    settings.STATIC_MANIFEST = False
    report = import_rules([str(CORRELATIONS)])
    assert report.errors == []


def test_correlation_page(client: Any, imported: None) -> None:
    page = client.get(f"/correlations/{REPEATED}/").content.decode()
    for text in ("event_count", "5m", "TargetUserName", "count &gt;= 5", "bad_password_logon"):
        assert text in page, text
    assert f'href="/rules/{BAD_PASSWORD}/"' in page
    assert "Splunk SPL" in page and "Grafana Loki LogQL" in page and "SQLite" in page
    assert "Elasticsearch ES|QL" in page
    assert "Used by correlations" in page and f"/correlations/{CHAINED}/" in page


def test_chained_correlation_page_links_the_inner_one(client: Any, imported: None) -> None:
    page = client.get(f"/correlations/{CHAINED}/").content.decode()
    assert f'href="/correlations/{REPEATED}/"' in page and "temporal_ordered" in page
    assert "Not converted" in page  # Splunk cannot convert temporal_ordered: it says so


def test_rule_page_shows_correlations_and_filters(client: Any, imported: None) -> None:
    page = client.get(f"/rules/{BAD_PASSWORD}/").content.decode()
    assert "Used by correlations" in page
    assert f"/correlations/{REPEATED}/" in page
    assert "Filters that apply" in page and f"/correlations/filters/{FILTER}/" in page
    other = client.get(f"/rules/{LOGON}/").content.decode()
    assert f"/correlations/{CHAINED}/" in other and f"/correlations/filters/{FILTER}/" not in other


def test_filter_page_and_list(client: Any, imported: None) -> None:
    page = client.get(f"/correlations/filters/{FILTER}/").content.decode()
    assert (
        "not selection" in page
        and "JUMP01" in page
        and "Conversion with the filter applied" in page
    )
    listing = client.get("/correlations/").content.decode()
    assert "Repeated Bad Password Logons for One Account" in listing
    assert "Ignore Bad Password Logons From the Jump Host Health Check" in listing


def test_unknown_correlation_is_404(client: Any, imported: None) -> None:
    assert client.get("/correlations/nope/").status_code == 404
    assert client.get("/correlations/filters/nope/").status_code == 404


def test_rule_page_convert_section_applies_the_filters_that_name_the_rule(
    client: Any, imported: None
) -> None:
    from rules.correlate.convert import convert_documents

    rule = Rule.objects.get(rule_id=BAD_PASSWORD)
    flt = MetaFilter.objects.get(filter_id=FILTER)
    [expected] = convert_documents([rule.raw_yaml, flt.raw_yaml], ["splunk"])
    [unfiltered] = convert_documents([rule.raw_yaml], ["splunk"])
    assert expected.queries and expected.queries != unfiltered.queries
    page = client.get(f"/rules/{BAD_PASSWORD}/?target=splunk").content.decode()
    assert 'id="convert-filters"' in page and "with the filter applied" in page
    assert f"/correlations/filters/{FILTER}/" in page.split('id="convert-filters"')[1]
    assert html.escape(expected.queries[0]) in page
    # A target that does not convert collections here says the query is unfiltered.
    page = client.get(f"/rules/{BAD_PASSWORD}/?target=kusto").content.decode()
    section = page.split('id="convert-filters"')[1]
    assert "The query above is this rule alone" in section
    assert "Filters are applied in the conversion for Splunk SPL" in section
    # A rule no filter names has no such block.
    assert 'id="convert-filters"' not in client.get(f"/rules/{LOGON}/").content.decode()
