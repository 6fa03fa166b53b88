"""The conversion cache, pages, API, bulk export, report and management command."""

from __future__ import annotations

import html
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.http import StreamingHttpResponse
from django.template.loader import render_to_string
from django.test import RequestFactory

from catalog import conversion
from catalog.models import Conversion
from rules import convert as conv
from tests.conversion.rules_fixtures import PLACEHOLDER_ID, PROCESS_ID, SEED_ID
from tests.factories import make_rule, rule_yaml

KEYWORD_ID = "5f3c1f1e-0000-4000-8000-0000000000e1"

pytestmark = pytest.mark.django_db


@pytest.fixture
def calls():
    """Backend conversions made since the fixture was created."""
    start = conv.stats.backend_calls
    return lambda: conv.stats.backend_calls - start


# --------------------------------------------------------------------------- cache


def test_second_lookup_is_served_from_the_cache(seed_rule, calls) -> None:
    first, cached = conversion.get_conversion(seed_rule, "splunk", "splunk_windows")
    assert not cached and calls() == 1
    second, cached = conversion.get_conversion(seed_rule, "splunk", "splunk_windows")
    assert cached and calls() == 1
    assert second.query == first.query and "EventCode=4104" in second.query
    assert second.sigma_cli_command.endswith("posh_ps_test_netconnection.yml")
    assert Conversion.objects.count() == 1


def test_failures_are_cached_too(catalog_rules, calls) -> None:
    rule = catalog_rules[2]
    result, _ = conversion.get_conversion(rule, "splunk")
    again, cached = conversion.get_conversion(rule, "splunk")
    assert cached and calls() == 1
    assert again.error == result.error and again.error_kind == "placeholder"


def test_cache_is_per_target_pipeline_and_format(seed_rule, calls) -> None:
    for target, pipeline, fmt in [
        ("splunk", "splunk_windows", None),
        ("splunk", "none", None),
        ("splunk", "splunk_windows", "savedsearches"),
        ("lucene", None, None),
    ]:
        conversion.get_conversion(seed_rule, target, pipeline, fmt)
    assert calls() == 4 and Conversion.objects.count() == 4


def test_new_revision_reconverts_and_replaces_the_stale_row(seed_rule, calls) -> None:
    conversion.get_conversion(seed_rule, "splunk")
    seed_rule.raw_yaml = seed_rule.raw_yaml.replace("Test-NetConnection", "Test-Connection")
    seed_rule.revision += 1
    seed_rule.save()
    result, cached = conversion.get_conversion(seed_rule, "splunk")
    assert not cached and calls() == 2
    assert "Test-Connection" in result.query and "Test-NetConnection" not in result.query
    assert list(Conversion.objects.values_list("revision", flat=True)) == [2]


def test_other_backend_version_is_a_miss(seed_rule, calls) -> None:
    conversion.get_conversion(seed_rule, "splunk")
    Conversion.objects.update(backend_version="pySigma-backend-splunk 0.0.1", outputs=["old"])
    result, cached = conversion.get_conversion(seed_rule, "splunk")
    assert not cached and result.query != "old"
    assert Conversion.objects.count() == 1


def test_bulk_conversion_reads_the_cache(catalog_rules, calls) -> None:
    from catalog.models import Rule

    first = list(conversion.convert_rules(Rule.objects.all(), "kusto"))
    assert calls() == 4 and not any(cached for _, _, cached in first)
    second = list(conversion.convert_rules(Rule.objects.all(), "kusto", batch=2))
    assert calls() == 4 and all(cached for _, _, cached in second)
    assert [r.rule_id for r, _, _ in first] == [r.rule_id for r, _, _ in second]
    forced = list(conversion.convert_rules(Rule.objects.all(), "kusto", force=True))
    assert calls() == 8 and Conversion.objects.count() == len(forced) == 4


# --------------------------------------------------------------------------- pages


def test_convert_section_include_renders_with_rule_and_request(site, seed_rule, calls) -> None:
    request = RequestFactory().get(f"/rules/{SEED_ID}/", {"target": "splunk"})
    html = render_to_string("rules/_convert.html", {"rule": seed_rule, "request": request})
    assert 'id="convert"' in html and 'method="get"' in html and 'action="#convert"' in html
    assert "EventCode=4104" in html
    assert "sigma convert -t splunk -p windows-logsources -p splunk_windows" in html
    assert 'data-copy="convert-query-0" data-status="convert-copy-status" hidden' in html
    assert "conversion/convert.js" in html and "<script>" not in html
    assert f"/rules/{SEED_ID}/?target=splunk&amp;pipeline=splunk_windows#convert" in html
    assert calls() == 1


def test_rule_convert_page_second_view_converts_nothing(site, client, seed_rule, calls) -> None:
    url = f"/rules/{SEED_ID}/convert/?target=splunk&pipeline=splunk_windows"
    first = client.get(url)
    assert first.status_code == 200 and calls() == 1
    second = client.get(url)
    assert second.status_code == 200 and calls() == 1
    body = second.content.decode()
    assert "Microsoft-Windows-PowerShell/Operational" in body and "from cache" in body
    assert '<option value="splunk_windows" selected>' in body


@pytest.mark.parametrize(
    ("query", "notice"),
    [
        ("target=nope", "Unknown target"),
        ("target=splunk&pipeline=microsoft_xdr", "is not available for Splunk SPL"),
    ],
)
def test_page_falls_back_on_bad_parameters(site, client, seed_rule, query, notice) -> None:
    response = client.get(f"/rules/{SEED_ID}/convert/?{query}")
    assert response.status_code == 200
    assert notice in response.content.decode()


def test_page_explains_an_unconvertible_rule(site, client, seed_rule) -> None:
    response = client.get(f"/rules/{SEED_ID}/convert/?target=kusto&pipeline=microsoft_xdr")
    body = response.content.decode()
    assert response.status_code == 200
    assert "cannot express this rule" in body and "category: ps_script" in body


def test_rule_convert_page_unknown_rule_is_404(site, client, db) -> None:
    assert client.get("/rules/does-not-exist/convert/").status_code == 404


# --------------------------------------------------------------------------- API


def test_api_rule_convert(site, client, seed_rule, calls) -> None:
    url = f"/api/rules/{SEED_ID}/convert/?target=splunk&pipeline=splunk_windows"
    data = client.get(url).json()
    assert data["ok"] and "EventCode=4104" in data["query"] and not data["cached"]
    assert data["sigma_cli_command"].startswith("sigma convert -t splunk")
    again = client.get(url).json()
    assert again["cached"] and calls() == 1
    assert again["query"] == data["query"]


def test_api_format_and_unconvertible(site, client, catalog_rules) -> None:
    data = client.get(f"/api/rules/{SEED_ID}/convert/?target=lucene&format=siem_rule_ndjson")
    assert data.status_code == 200
    assert data.json()["outputs"][0]["rule_id"] == SEED_ID
    failed = client.get(f"/api/rules/{PLACEHOLDER_ID}/convert/?target=splunk").json()
    assert failed["ok"] is False and failed["error_kind"] == "placeholder"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("target=nope", "target"),
        ("", "target"),
        ("target=splunk&pipeline=nope", "pipeline"),
        ("target=splunk&pipeline=microsoft_xdr", "pipeline"),
        ("target=kusto&format=savedsearches", "format"),
    ],
)
def test_api_bad_parameters_are_400(site, client, seed_rule, query, parameter) -> None:
    response = client.get(f"/api/rules/{SEED_ID}/convert/?{query}")
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter


def test_api_unknown_rule_is_404(site, client, db) -> None:
    response = client.get("/api/rules/nope/convert/?target=splunk")
    assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_api_errors_have_the_one_shape(site, client, seed_rule) -> None:
    """{"detail", "parameter"} plus "choices" for a parameter with a list of values."""
    bad = client.get(f"/api/rules/{SEED_ID}/convert/?target=nope").json()
    assert set(bad) == {"detail", "parameter", "choices"} and bad["detail"]
    assert bad["parameter"] == "target" and set(bad["choices"]) == set(conv.TARGETS)
    missing = client.get("/api/rules/nope/convert/?target=splunk").json()
    assert missing == {"detail": "no rule with id 'nope'", "parameter": None}
    unknown = client.get("/api/convert/export/?target=splunk&level=bogus").json()
    assert unknown["parameter"] == "level" and "high" in unknown["choices"]
    refused = client.post("/api/convert/targets/")
    assert refused.status_code == 405
    assert refused.json() == {"detail": 'Method "POST" not allowed.', "parameter": None}


def test_api_rule_convert_body_is_indented_json(site, client, seed_rule) -> None:
    response = client.get(f"/api/rules/{SEED_ID}/convert/?target=splunk")
    assert response["Content-Type"] == "application/json"
    assert response.content.decode() == json.dumps(response.json(), indent=2)


def test_api_targets(site, client, db) -> None:
    data = client.get("/api/convert/targets/").json()
    assert {t["id"] for t in data["targets"]} == set(conv.TARGETS)


# --------------------------------------------------------------------------- export


def _body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def test_export_savedsearches_streams_filtered_rules(site, client, catalog_rules) -> None:
    response = client.get("/api/convert/export/?target=splunk&level=high")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="savedsearches.conf"'
    body = _body(response)
    assert body.startswith("\n[default]\n") and "[Whoami Execution]" in body
    assert "[Testing Usage of Uncommonly Used Port]" not in body  # level medium: filtered out


def test_export_ndjson_and_skipped_rules(site, client, catalog_rules) -> None:
    response = client.get("/api/convert/export/?target=lucene&format=siem_rule_ndjson")
    assert response["Content-Type"] == "application/x-ndjson"
    *rules, summary = [json.loads(line) for line in _body(response).splitlines()]
    ids = {r["rule_id"] for r in rules}
    assert {SEED_ID, PROCESS_ID} <= ids and PLACEHOLDER_ID not in ids
    # The last line says what is not in the file, and why (Kibana's export summary shape).
    assert summary["exportedCount"] == len(rules)
    skipped = {item["rule_id"]: item for item in summary["notExported"]}
    assert skipped[PLACEHOLDER_ID]["status"] == "failed" and skipped[PLACEHOLDER_ID]["reason"]


def test_export_plain_list(site, client, catalog_rules) -> None:
    body = _body(client.get("/api/convert/export/?target=kusto&format=default&q=Whoami"))
    assert body.startswith("DeviceProcessEvents\n| where") and "\n\n" not in body
    body = _body(client.get("/api/convert/export/?target=kusto&pipeline=none&format=default"))
    queries, trailer = body.split("\n# 2 rule(s) not exported:\n")
    assert len(queries.strip().split("\n\n")) == 2  # placeholder and fieldref rules left out
    assert PLACEHOLDER_ID in trailer


def test_export_uses_and_fills_the_cache(site, client, catalog_rules, calls) -> None:
    _body(client.get("/api/convert/export/?target=loki&format=ruler"))
    assert calls() == 4
    _body(client.get("/api/convert/export/?target=loki&format=ruler"))
    assert calls() == 4


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("target=nope", "target"),
        ("target=kusto&format=savedsearches", "format"),
        ("target=splunk&pipeline=ecs_windows", "pipeline"),
        ("target=splunk&level=bogus", "level"),
    ],
)
def test_export_bad_parameters_are_400(site, client, db, query, parameter) -> None:
    response = client.get(f"/api/convert/export/?{query}")
    assert response.status_code == 400 and response.json()["parameter"] == parameter


# --------------------------------------------------------------------------- report, command


def test_command_prints_counts_and_failures(catalog_rules) -> None:
    out = StringIO()
    call_command("convert_rules", "--target", "splunk", "--target", "lucene", stdout=out)
    text = out.getvalue()
    assert "splunk / splunk_windows / default: 3 converted, 1 failed of 4 rules" in text
    assert f"FAILED {PLACEHOLDER_ID}" in text and "placeholder" in text
    assert "lucene / ecs_windows / default: 2 converted, 2 failed of 4 rules" in text
    assert "field references" in text
    again = StringIO()
    call_command("convert_rules", "--target", "splunk", stdout=again)
    assert "(0 converted now, 4 cached" in again.getvalue()


def test_command_all_targets(catalog_rules) -> None:
    out = StringIO()
    call_command("convert_rules", "--all-targets", "--max-failures", "1", stdout=out)
    text = out.getvalue()
    for target in conv.TARGETS:
        assert f"\n{target} " in "\n" + text
    assert "converted" in text and "failed" in text


def test_command_needs_a_target(db) -> None:
    with pytest.raises(CommandError):
        call_command("convert_rules")
    with pytest.raises(CommandError):
        call_command("convert_rules", "--target", "splunk", "--pipeline", "microsoft_xdr")


def test_report_page(site, client, catalog_rules, calls) -> None:
    call_command("convert_rules", "--target", "splunk", "--target", "kusto", stdout=StringIO())
    before = calls()
    response = client.get("/convert/report/")
    assert response.status_code == 200 and calls() == before
    body = response.content.decode()
    assert "Splunk SPL" in body and "Attempt to convert unhandled placeholder" in body
    summaries = {(s.target.id, s.pipeline.id): s for s in response.context["summaries"]}
    assert summaries["splunk", "splunk_windows"].converted == 3
    assert summaries["splunk", "splunk_windows"].failed == 1
    assert summaries["lucene", "ecs_windows"].missing == 4
    one = client.get("/convert/report/?target=splunk&pipeline=splunk_windows")
    assert [s.target.id for s in one.context["summaries"]] == ["splunk"]
    assert client.get("/convert/report/?target=nope").status_code == 404


def test_rule_page_shows_the_convert_section(site, client, seed_rule) -> None:
    """The colleague's rule page includes rules/_convert.html with its own context."""
    response = client.get(f"/rules/{SEED_ID}/?target=splunk&pipeline=splunk_windows")
    if response.status_code != 200 or "rules/_convert.html" not in [
        t.name for t in response.templates
    ]:
        pytest.skip("the rule page does not include rules/_convert.html (yet)")
    body = response.content.decode()
    assert 'id="convert"' in body and "EventCode=4104" in body


def test_section_renders_before_the_urls_are_wired(settings, seed_rule) -> None:
    """The rule page includes the section as soon as the template exists: no NoReverseMatch."""
    settings.ROOT_URLCONF = "catalog.urls"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    request = RequestFactory().get(f"/rules/{SEED_ID}/")
    html = render_to_string("rules/_convert.html", {"rule": seed_rule, "request": request})
    assert 'id="convert"' in html and "EventCode=4104" in html


# --------------------------------------------------------------------------- verification


def test_api_says_whether_the_query_parses(site, client, seed_rule) -> None:
    data = client.get(f"/api/rules/{SEED_ID}/convert/?target=lucene").json()
    assert data["ok"] and data["valid"] is True and data["status"] == "verified"
    assert data["verifier"] == "luqum" and data["problem"] is None and data["fixes"] == []


def test_invalid_query_is_marked_in_api_page_export_and_report(site, client, db) -> None:
    text = rule_yaml(
        title="Bare Keywords",
        id=KEYWORD_ID,
        logsource={"product": "linux"},
        detection="keywords:\n    - 'bash -c'\n    - '/dev/tcp/'\ncondition: keywords",
        level="high",
    )
    make_rule(text)
    data = client.get(f"/api/rules/{KEYWORD_ID}/convert/?target=eql").json()
    assert data["ok"] and data["valid"] is False and data["status"] == "invalid"
    assert data["problem"].startswith("line 1, column")
    page = client.get(f"/rules/{KEYWORD_ID}/convert/?target=eql").content.decode()
    assert "Does not parse" in page and data["problem"] in html.unescape(page)
    *rules, summary = [
        json.loads(line)
        for line in _body(client.get("/api/convert/export/?target=eql")).splitlines()
    ]
    assert rules == [] and summary["notExported"][0]["status"] == "invalid"
    assert "does not parse" in summary["notExported"][0]["reason"]
    out = StringIO()
    call_command("convert_rules", "--target", "eql", stdout=out)
    assert "1 invalid" in out.getvalue() and f"INVALID {KEYWORD_ID}" in out.getvalue()
    report = client.get("/convert/report/?target=eql").content.decode()
    assert "do not parse" in report and "Bare Keywords" in report


def test_cached_verdict_is_read_back(seed_rule, calls) -> None:
    first, _ = conversion.get_conversion(seed_rule, "eql")
    again, cached = conversion.get_conversion(seed_rule, "eql")
    assert cached and calls() == 1
    assert (again.verifier, again.problem, again.fixes) == (first.verifier, None, ())
    assert again.status == "verified"


# --------------------------------------------------------------------------- custom pipeline

PIPELINE_YAML = """\
name: my field names
priority: 30
transformations:
  - type: field_name_mapping
    mapping:
      ScriptBlockText: script.text
"""


def test_api_custom_pipeline_changes_the_output(site, client, seed_rule, calls) -> None:
    url = f"/api/rules/{SEED_ID}/convert/"
    body = {"target": "splunk", "pipeline": "splunk_windows", "pipeline_yaml": PIPELINE_YAML}
    data = client.post(url, body, content_type="application/json").json()
    assert 'script.text="*Test-NetConnection*"' in data["query"]
    assert data["sigma_cli_command"].endswith(
        "-p windows-logsources -p splunk_windows -p pipeline.yml posh_ps_test_netconnection.yml"
    )
    assert data["cached"] is False and data["custom_pipeline"]
    client.post(url, body, content_type="application/json")
    assert calls() == 2 and Conversion.objects.count() == 0  # never cached


@pytest.mark.parametrize(
    ("yaml_text", "line", "words"),
    [
        ("name: x\ntransformations:\n  - type: nope\n", 3, "nope"),
        ("name: x\ntransformations: [1\n", 3, "YAML"),
        (
            "transformations:\n  - type: field_name_mapping\n    mapping: {a: b}\n"
            "finalizers:\n  - type: template\n    template: '{{ queries }}'\n",
            5,
            "Jinja",
        ),
        ("transformations:\n  - type: value_placeholders\n    path: /etc\n", 3, "path"),
        ("!!python/object:os.system {}\n", 1, "YAML"),
    ],
)
def test_api_broken_pipeline_is_400_naming_the_line(
    site, client, seed_rule, yaml_text, line, words
) -> None:
    response = client.post(
        f"/api/rules/{SEED_ID}/convert/",
        {"target": "splunk", "pipeline_yaml": yaml_text},
        content_type="application/json",
    )
    assert response.status_code == 400
    data = response.json()
    assert data["parameter"] == "pipeline_yaml"
    assert data["detail"].startswith(f"line {line}: ") and words in data["detail"]


def test_api_pipeline_size_cap(site, client, seed_rule) -> None:
    response = client.post(
        f"/api/rules/{SEED_ID}/convert/",
        {"target": "splunk", "pipeline_yaml": "# x\n" * 20000},
        content_type="application/json",
    )
    assert response.status_code == 400 and "larger than" in response.json()["detail"]


def test_page_custom_pipeline_form(site, client, seed_rule) -> None:
    url = f"/rules/{SEED_ID}/convert/"
    form = {"target": "splunk", "pipeline": "splunk_windows", "pipeline_yaml": PIPELINE_YAML}
    page = client.post(url, form)
    assert page.status_code == 200
    body = html.unescape(page.content.decode())
    assert 'script.text="*Test-NetConnection*"' in body and "-p pipeline.yml" in body
    broken = client.post(url, {**form, "pipeline_yaml": "transformations:\n  - type: nope\n"})
    assert broken.status_code == 400
    assert "line 2: " in html.unescape(broken.content.decode())
