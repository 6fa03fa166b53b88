"""Pages over the full SigmaHQ corpus (imported once for the module, rolled back after it):
the seed rule's page, a rule of every logsource, every event, technique and tactic page, and
corpus counts checked against a count made here from the catalog's rows."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from catalog.filters import RuleFilterSet
from catalog.models import Rule, RuleIndicator, Tactic, Technique
from catalog.services import import_rules
from tests.conftest import corpus_dirs
from tests.independent import identity
from tests.pages.conftest import SECTION_IDS, section_order

pytestmark = [pytest.mark.corpus, pytest.mark.django_db]

SEED = "adf876b3-f1f8-4aa9-a4e4-a64106feec06"


@pytest.fixture(scope="module")
def corpus_catalog(django_db_setup: Any, django_db_blocker: Any, corpus: Any) -> Iterator[None]:
    outer = transaction.atomic()
    with django_db_blocker.unblock():
        outer.__enter__()
        report = import_rules([str(d) for d in corpus_dirs()])
        assert report.created > 3000, report.summary()
    yield
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


def get_ok(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}"')
    return html[start : html.index("</section>", start)]


def text_of(fragment: str, sep: str = " ") -> str:
    """Visible text: tags dropped, whitespace collapsed, the usual entities decoded."""
    plain = re.sub(r"<[^>]+>", sep, fragment)
    plain = plain.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")
    return re.sub(r"\s+", " ", plain.replace("&lt;", "<").replace("&gt;", ">"))


def test_seed_rule_page_has_the_seed_content(client: Client, corpus_catalog: None) -> None:
    html = get_ok(client, f"/rules/{SEED}/")
    assert section_order(html) == SECTION_IDS
    head = text_of(html[: html.index('<div class="rule-layout">')])
    start = html.index('class="breadcrumb"')
    crumbs = text_of(html[start : html.index("</nav>", start)]).split()
    assert crumbs[-4:] == ["Detection", "rules", "Sigma", "windows/ps_script"]
    assert "Testing Usage of Uncommonly Used Port" in head
    for fact in ("test", "medium", "frack113", "2022-01-23"):
        assert fact in head
    assert "Adversaries may communicate using a protocol and port paring" in text_of(
        section(html, "description")
    )
    details = text_of(section(html, "details"))
    assert "atomic-red-team" in details and "Legitimate administrative script" in details
    attack_text = text_of(section(html, "attack"))
    assert re.search(r"Command and Control TA0011 T1571 Non-Standard Port", attack_text)
    assert "The MITRE Corporation" in attack_text
    events = text_of(section(html, "events"))
    assert re.search(
        r"PowerShell .*Event ID 4104 Creating Scriptblock text \(MessageNumber of "
        r"MessageTotal\)\.",
        events,
    )
    assert "Requirements: Script Block Logging must be enabled" in events
    body = text_of(section(html, "rule-body"), sep="")
    assert "ScriptBlockText|contains|all:" in body and "condition: selection and not filter" in body
    stages = text_of(section(html, "stages"))
    assert re.search(r"Stage 0: condition selection and not filter", stages)
    assert "Stage 1: selection" in stages and "Stage 2: not filter" in stages
    exclusions = text_of(section(html, "exclusions"))
    assert re.search(r"ScriptBlockText contains ' 443 ' 1 ' 80 ' 1", exclusions)
    indicators = text_of(section(html, "indicators"))
    for value in ("Test-NetConnection", "'-ComputerName '", "'-port '"):
        assert value in indicators


def test_indicator_corpus_counts_agree_with_an_independent_count(
    client: Client, corpus_catalog: None
) -> None:
    """For random rules, each Corpus cell equals the number of catalog rules whose written
    values share the row's identity, recomputed here from every RuleIndicator row."""
    rules_by_identity: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for rule_pk, field, kind, value in RuleIndicator.objects.values_list(
        "rule_id", "indicator__field", "indicator__kind", "value"
    ):
        rules_by_identity[identity(field, kind, value)].add(rule_pk)
    candidates = sorted(
        Rule.objects.filter(rule_indicators__isnull=False).distinct().values_list("pk", flat=True)
    )
    checked = 0
    for rule_pk in random.Random(20240601).sample(candidates, 40):
        rule = Rule.objects.get(pk=rule_pk)
        html = get_ok(client, rule.get_absolute_url() + "?all=1")
        shown = {
            int(pk): int(count.replace(",", ""))
            for pk, count in re.findall(
                r'href="/indicators/(\d+)/">.*?<span class="corpus">([\d,]+)</span>',
                section(html, "indicators"),
                flags=re.DOTALL,
            )
        }
        expected = {
            link.indicator_id: len(
                rules_by_identity[identity(link.indicator.field, link.indicator.kind, link.value)]
            )
            for link in rule.rule_indicators.select_related("indicator")
        }
        assert shown == expected, rule.rule_id
        checked += len(shown)
    assert checked > 100


def test_a_rule_of_every_logsource_and_every_event_page_render(
    client: Client, corpus_catalog: None
) -> None:
    logsources = sorted(
        Rule.objects.order_by().values_list("product", "category", "service").distinct()
    )
    # The breadcrumb's list page (a cold facet computation each) for a sample of them.
    sampled = set(random.Random(7).sample(logsources, 25))
    events: set[str] = set()
    visited = 0
    for product, category, service in logsources:
        rule = Rule.objects.filter(product=product, category=category, service=service).order_by(
            "rule_id"
        )[0]
        html = get_ok(client, rule.get_absolute_url())
        assert section_order(html) == SECTION_IDS, rule.rule_id
        events.update(re.findall(r'href="(/events/[a-z0-9-]+/)"', html))
        visited += 1
        if (product, category, service) not in sampled:
            continue
        # The breadcrumb's logsource link: a filter on the parts the rule names.
        crumb = re.search(r'<li><a href="(/rules/\?[^"]*)">[^<]*</a></li>\s*</ol>', html)
        listing = get_ok(client, crumb.group(1).replace("&amp;", "&"))
        parts = {"product": product, "category": category, "service": service}
        expected = RuleFilterSet({k: v for k, v in parts.items() if v}, Rule.objects.all()).qs
        assert re.search(rf'role="status">{expected.count():,} rule', listing), rule.logsource_label
    assert visited == len(logsources) > 100  # one rule per distinct logsource
    listed = set()
    page = 1
    while True:
        html = get_ok(client, f"/events/?page={page}")
        listed.update(re.findall(r'href="(/events/[a-z0-9-]+/)"', html))
        if 'rel="next"' not in html:
            break
        page += 1
    assert events <= listed
    for url in sorted(listed):
        html = get_ok(client, url)
        assert "Fields the rules read" in html


def test_every_technique_and_tactic_page_renders_with_its_rules(
    client: Client, corpus_catalog: None
) -> None:
    matrix = get_ok(client, "/attack/")
    for technique in Technique.objects.all():
        html = get_ok(client, technique.get_absolute_url())
        expected = RuleFilterSet({"technique": technique.attack_id}, Rule.objects.all()).qs
        assert f"{expected.count():,} rule" in html, technique.attack_id
        if "." not in technique.attack_id and technique.known:
            cell = re.search(rf"{technique.attack_id} · ([\d,]+) rules?", matrix)
            if cell:  # top-level techniques of the v19 matrix
                assert int(cell.group(1).replace(",", "")) == expected.count()
    for tactic in Tactic.objects.all():
        html = get_ok(client, f"/attack/tactic/{tactic.shortname}/")
        assert f"{tactic.rules.count():,} rule" in html


def test_list_pages_search_and_facets_over_the_corpus(client: Client, corpus_catalog: None) -> None:
    html = get_ok(client, "/rules/?q=mimikatz")
    titles = re.findall(r'class="rule-title" href="[^"]+">([^<]+)<', html)
    assert any("Mimikatz" in title for title in titles[:10])
    html = get_ok(client, "/rules/?q=powershell&level=high&tactic=execution&sort=-modified")
    count = RuleFilterSet(
        {"q": "powershell", "level": ["high"], "tactic": "execution"}, Rule.objects.all()
    ).qs.count()
    assert re.search(rf'role="status">{count:,} rule', html)
    for url in ("/", "/rules/?page=9999", "/attack/?covered=1", "/indicators/",
                "/indicators/?field=CommandLine&kind=contains", "/exclusions/",
                "/exclusions/?q=\\windows\\", "/events/?provider=Security"):  # fmt: skip
        get_ok(client, url)


def test_huge_ioc_rules_are_cut_with_a_show_all_link(client: Client, corpus_catalog: None) -> None:
    from django.db.models import Count

    biggest = Rule.objects.annotate(n=Count("rule_indicators")).order_by("-n").first()
    assert biggest.n > 1000
    html = get_ok(client, biggest.get_absolute_url())
    assert html.count('<span class="corpus">') == 300
    assert f"Show all {biggest.n:,}" in html
    html = get_ok(client, biggest.get_absolute_url() + "?all=1")
    assert html.count('<span class="corpus">') == biggest.n
