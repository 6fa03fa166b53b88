"""Catalog pages over the example rules (no corpus needed): every page renders, links reach
every page from home, facets agree with results, bad input never fails a page."""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import Resolver404, resolve, reverse

from catalog.models import Exclusion, ImportRun, Indicator, Rule, Technique
from tests.pages.conftest import SECTION_IDS, links, section_order

PAGE_NAMES = {
    "home", "rule-list", "rule-detail", "rule-download", "attack-matrix", "tactic-detail",
    "technique-detail", "event-list", "event-detail", "indicator-list", "indicator-detail",
    "exclusion-list", "exclusion-detail",
}  # fmt: skip


def get_ok(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def test_home_shows_statistics_charts_and_latest_import(client: Client, examples: None) -> None:
    html = get_ok(client, "/")
    assert "Sigma Catalog" in html
    assert f"<strong>{Rule.objects.count()}</strong> rules" in html
    assert html.count('<svg class="chart"') == 3  # level, tactic, logsource
    assert "Latest import" in html and ImportRun.objects.first().get_status_display() in html
    for href in ("/rules/", "/attack/", "/events/", "/indicators/", "/exclusions/", "/sandbox/",
                 "/api/docs/"):  # fmt: skip
        assert f'href="{href}"' in html


def test_every_page_is_reached_from_home_by_links(client: Client, examples: None) -> None:
    """Breadth-first over internal links from "/", a few pages per URL name, none failing."""
    seen_names: set[str] = set()
    per_name: dict[str, int] = {}
    queue = deque(["/"])
    visited: set[str] = set()
    while queue:
        url = queue.popleft()
        if url in visited:
            continue
        visited.add(url)
        try:
            match = resolve(urlsplit(url).path)
        except Resolver404:
            continue  # /sandbox/ before the sandbox exists
        if match.namespace != "catalog":
            continue  # API, conversion, sandbox: colleagues' pages
        name = match.url_name
        if per_name.get(name, 0) >= 3:
            continue
        per_name[name] = per_name.get(name, 0) + 1
        response = client.get(url)
        assert response.status_code == 200, url
        seen_names.add(name)
        if name == "rule-download":
            continue
        queue.extend(link for link in links(response.content.decode())
                     if not link.startswith(("/static/", "/admin/")))  # fmt: skip
    assert seen_names >= PAGE_NAMES, PAGE_NAMES - seen_names


def test_rule_page_has_every_section_in_seed_order(client: Client, examples: None) -> None:
    rule = Rule.objects.filter(rule_exclusions__isnull=False).distinct().first()
    html = get_ok(client, rule.get_absolute_url())
    assert section_order(html) == SECTION_IDS
    for section in SECTION_IDS:  # table of contents links every section
        assert f'href="#{section}"' in html
    assert "Detection rules" in html and f">{rule.logsource_label}</a>" in html
    assert '<div class="highlight">' in html  # Pygments, CSS classes only
    assert "style=" not in html  # the CSP forbids inline styles
    assert "<script>" not in html and "<script " not in html.replace('<script src="/static/', "")
    assert f'href="{reverse("catalog:rule-download", args=[rule.rule_id])}"' in html
    for link in rule.rule_indicators.select_related("indicator"):
        assert f'href="/indicators/{link.indicator_id}/"' in html
    for link in rule.rule_exclusions.all():
        assert f'href="/exclusions/{link.exclusion_id}/"' in html


def test_rule_page_shows_metadata_tags_and_attack_names(client: Client, examples: None) -> None:
    rule = next(r for r in Rule.objects.filter(techniques__isnull=False).distinct()
                if r.references and r.tactics.exists())  # fmt: skip
    html = get_ok(client, rule.get_absolute_url())
    for text in (rule.title, rule.status, rule.level, rule.author.split(",")[0]):
        assert text and text in html
    for technique in rule.techniques.all():
        assert technique.attack_id in html and technique.name in html
    for tactic in rule.tactics.all():
        assert tactic.name in html
    for reference in rule.references:
        if reference.startswith("http"):
            assert f'href="{reference}"' in html
    assert "The MITRE Corporation" in html


def test_rule_download_is_the_raw_yaml_as_attachment(client: Client, examples: None) -> None:
    rule = Rule.objects.first()
    response = client.get(reverse("catalog:rule-download", args=[rule.rule_id]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response.content.decode() == rule.raw_yaml


@pytest.mark.parametrize(
    "url",
    [
        "/rules/00000000-0000-0000-0000-000000000000/",
        "/rules/00000000-0000-0000-0000-000000000000.yml",
        "/attack/technique/T9999/",
        "/attack/technique/not-a-technique/",
        "/attack/tactic/not-a-tactic/",
        "/events/no-such-event-1/",
        "/indicators/999999999/",
        "/exclusions/999999999/",
        "/no/such/page/",
    ],
)
def test_unknown_objects_get_the_site_404_page(client: Client, examples: None, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    html = response.content.decode()
    assert "Sigma Catalog" in html and "Nothing here" in html
    assert 'href="/rules/"' in html  # the site's navigation, not Django's plain page


@pytest.mark.parametrize(
    ("url", "notice"),
    [
        ("/rules/?page=abc", ""),
        ("/rules/?page=99999999999999999999999", ""),
        ("/rules/?page=-3", ""),
        ("/rules/?level=bogus", "Ignored level"),
        ("/rules/?status=nope&level=high", "Ignored status"),
        ("/rules/?sort=x", "Unknown sort"),
        ("/rules/?per_page=7", "Page size"),
        ("/rules/?indicator=abc", "Ignored indicator"),
        ("/rules/?q=%00%00&tactic=%00", ""),
        ("/rules/?q=" + "a" * 3000, ""),
        ("/rules/?q=%22unbalanced+%28+or+-+%21", ""),
        ("/rules/?technique=zzz&tactic=nope", ""),
        ("/indicators/?kind=bogus", "No indicator kind"),
        ("/indicators/?page=abc&field=%00", ""),
        ("/exclusions/?page=123456789&shared=x", ""),
        ("/events/?provider=nope", "No provider"),
        ("/events/?page=zz&q=%00", ""),
        ("/attack/?covered=maybe", ""),
        ("/attack/technique/T1059/?page=abc", ""),
        ("/attack/tactic/execution/?page=999999", ""),
    ],
)
def test_bad_query_parameters_are_ignored_or_reported(
    client: Client, examples: None, url: str, notice: str
) -> None:
    html = get_ok(client, url)
    if notice:
        assert notice in html


def test_facet_counts_equal_the_result_counts_they_lead_to(client: Client, examples: None) -> None:
    html = get_ok(client, "/rules/")
    facet_links = re.findall(
        r'<a href="(\?[^"]+)"><span class="facet-box"[^>]*></span><span class="facet-label">'
        r'(?:(?!</span>).)*</span><span class="count">([\d,]+)</span>',
        html,
    )
    assert len(facet_links) > 20
    for href, count in facet_links:
        target = get_ok(client, "/rules/" + href.replace("&amp;", "&"))
        shown = re.search(r'<p class="lead" role="status">([\d,]+) rule', target)
        assert shown and shown.group(1) == count, (href, count)


def test_facets_toggle_and_combine_in_the_url(client: Client, examples: None) -> None:
    html = get_ok(client, "/rules/?level=high&sort=-date")
    toggles = dict(re.findall(r'<a href="(\?[^"]+)"( class="active")?', html))
    active = [href for href, flag in toggles.items() if flag]
    assert active, "the selected level is marked active"
    removing = parse_qs(active[0].replace("&amp;", "&")[1:])
    assert "level" not in removing and removing["sort"] == ["-date"]
    adding = [parse_qs(h.replace("&amp;", "&")[1:]) for h in toggles if "level=critical" in h]
    assert adding and sorted(adding[0]["level"]) == ["critical", "high"]


def test_search_covers_title_description_tags_and_indicator_values(
    client: Client, examples: None
) -> None:
    rule = Rule.objects.filter(rule_indicators__isnull=False).first()
    value = rule.rule_indicators.order_by("-indicator__value")[0].value.strip("\\ ")
    word = max(re.findall(r"[A-Za-z]{5,}", value) or [value], key=len)
    for query in (rule.title.split()[0], word, rule.tags.first().name):
        html = get_ok(client, f"/rules/?q={query}")
        assert rule.title in html, query


def test_sorting_changes_the_order(client: Client, examples: None) -> None:
    first = re.findall(r'class="rule-title" href="[^"]+">([^<]+)<', get_ok(client, "/rules/"))
    last = re.findall(r'class="rule-title" href="[^"]+">([^<]+)<',
                      get_ok(client, "/rules/?sort=-title"))  # fmt: skip
    assert first == sorted(first) and last == list(reversed(first))


def test_attack_matrix_rolls_sub_techniques_into_their_parent(
    client: Client, examples: None
) -> None:
    html = get_ok(client, "/attack/")
    assert html.index("Reconnaissance") < html.index("Execution") < html.index("Impact")
    parent = Technique.objects.filter(attack_id__contains=".").first().parent_id
    expected = Rule.objects.filter(techniques__attack_id__startswith=parent).distinct().count()
    cell = re.search(rf"{parent} · (\d+) rules?", html)
    assert cell and int(cell.group(1)) == expected
    assert 'class="cell heat-0"' in html
    assert 'class="cell heat-0"' not in get_ok(client, "/attack/?covered=1")


def test_tactic_and_technique_pages_list_their_rules(client: Client, examples: None) -> None:
    technique = Technique.objects.filter(rules__isnull=False).first()
    html = get_ok(client, technique.get_absolute_url())
    for rule in technique.rules.all():
        assert rule.title in html
    html = get_ok(client, "/attack/tactic/execution/")
    for rule in Rule.objects.filter(tactics__shortname="execution"):
        assert rule.title in html


def test_events_pages_list_sources_rules_and_field_usage(client: Client, examples: None) -> None:
    html = get_ok(client, "/events/")
    assert "PowerShell" in html and "Event ID 4104" in html
    event_urls = sorted(set(re.findall(r'href="(/events/[a-z0-9-]+/)"', html)))
    assert event_urls
    html = get_ok(client, "/events/powershell-4104/")
    for rule in Rule.objects.filter(category="ps_script"):
        assert rule.title in html
    assert "ScriptBlockText" in html  # the field usage table


def test_indicator_pages_show_counts_and_each_rule_with_its_own_value(
    client: Client, examples: None
) -> None:
    html = get_ok(client, "/indicators/")
    assert '<svg class="chart"' in html
    top = Indicator.objects.order_by("-rule_count").first()
    html = get_ok(client, top.get_absolute_url())
    assert f'<strong class="corpus">{top.rule_count}</strong>' in html
    for link in top.rule_indicators.select_related("rule"):
        assert link.rule.title in html
    exclusion = Exclusion.objects.first()
    html = get_ok(client, exclusion.get_absolute_url())
    assert "Excluded by" in html
    field = Indicator.objects.exclude(field="").first().field
    html = get_ok(client, f"/indicators/?field={field}&shared=1")
    assert f'<option value="{field}" selected>' in html


def test_rule_page_includes_colleague_sections_once_their_templates_exist(
    client: Client, examples: None, settings, tmp_path
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "_sandbox_box.html").write_text(
        '<section id="sandbox-box">{{ rule.title }}</section>'
    )
    engine = settings.TEMPLATES[0]
    settings.TEMPLATES = [{**engine, "DIRS": [tmp_path, *engine["DIRS"]]}]
    rule = Rule.objects.first()
    html = get_ok(client, rule.get_absolute_url())
    assert f'<section id="sandbox-box">{rule.title}</section>' in html
    assert html.index('id="indicators"') < html.index('id="sandbox-box"')


def test_error_pages_render_without_a_request_or_database() -> None:
    """500.html gets no context at all (Django renders it after an unknown failure); 503.html
    is rendered by the database-outage middleware, so neither may touch the database."""
    from django.template.loader import render_to_string
    from django.test import RequestFactory
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert "Sigma Catalog" in html and 'href="/rules/"' in html and "/static/css/site.css" in html
    html = render_to_string("503.html", request=RequestFactory().get("/"))
    assert "temporarily unavailable" in html
