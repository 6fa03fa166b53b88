"""Evidence stored at import (issue 14): findings, regression replays, related rules; and how
the rule page, the quality pages, the rule list facets and the API show them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.evidence import compatible
from catalog.models import RelatedRule, Rule, RuleFinding, RuleRegression
from catalog.queries.quality import load_evidence
from catalog.services import import_rules
from catalog.views.rule_detail import rule_analysis
from tests import factories
from tests.factories import WINDOWS_PROCESS_CREATION, rule_yaml, write_regression_sample

A = "5a1c2d3e-0000-4000-8000-00000000000a"
COPY = "5a1c2d3e-0000-4000-8000-00000000000b"
OTHER = "5a1c2d3e-0000-4000-8000-00000000000c"
TESTED = "5a1c2d3e-0000-4000-8000-00000000000d"
DETECTION = """
selection:
    Image|endswith: '\\whoami.exe'
    CommandLine|contains:
        - '/all'
        - '/priv'
condition: selection
"""


def rule(rule_id: str, title: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "title": title,
        "id": rule_id,
        "status": "test",
        "description": "Detects whoami being run to list the current privileges.",
        "author": "Test Author",
        "date": "2024-01-02",
        "tags": ["attack.discovery", "attack.t1033"],
        "logsource": WINDOWS_PROCESS_CREATION,
        "detection": DETECTION,
        "level": "medium",
    }
    values.update(fields)
    return rule_yaml(**values)


def sysmon(image: str) -> dict[str, Any]:
    return {"Event": {"System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                                 "EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational"},
                      "EventData": {"Image": image, "CommandLine": f"{image} /all"}}}  # fmt: skip


@pytest.fixture(autouse=True)
def _site(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    factories.isolate_site(settings, monkeypatch)
    cache.clear()


@pytest.fixture
def catalog(db: None, tmp_path: Path) -> Path:
    """A SigmaHQ-shaped folder: a rule, a copy of it under another id, a rule with a bad tag
    naming the first one as derived, and a rule with a regression sample."""
    root = tmp_path / "sigma"
    declared = write_regression_sample(
        root, "windows/proc_creation_win_tested", TESTED, "Tested", [sysmon("C:\\x\\whoami.exe")]
    )
    factories.write_rule_files(
        root / "rules" / "windows",
        {
            "proc_creation_win_whoami_priv.yml": rule(A, "Whoami Privileges"),
            "proc_creation_win_whoami_priv_copy.yml": rule(COPY, "Whoami Privileges Copy"),
            "proc_creation_win_whoami_other.yml": rule(
                OTHER, "Whoami Other", tags=["attack.discovery", "attack.t9999"],
                related=None, extra=f"related:\n    - id: {A}\n      type: derived\n",
                detection="selection:\n    Image|endswith: '\\whoami.exe'\ncondition: selection",
            ),
            "proc_creation_win_tested.yml": rule(
                TESTED, "Tested Whoami", regression_tests_path=declared,
                detection="selection:\n    Image|endswith: '\\whoami.exe'\ncondition: selection",
            ),
        },
    )  # fmt: skip
    report = import_rules([str(root / "rules")])
    assert report.created == 4, report.summary()
    return root


def test_findings_are_stored_with_their_line(catalog: Path) -> None:
    finding = RuleFinding.objects.get(rule__rule_id=OTHER, validator="attacktag")
    assert "attack.t9999" in finding.message
    text = Rule.objects.get(rule_id=OTHER).raw_yaml
    assert text.splitlines()[finding.line - 1].strip() == "- attack.t9999"
    assert finding.content_hash == Rule.objects.get(rule_id=OTHER).content_hash
    assert not RuleFinding.objects.filter(rule__rule_id=A).exists()


def test_a_changed_rule_gets_fresh_findings(catalog: Path) -> None:
    path = catalog / "rules" / "windows" / "proc_creation_win_whoami_other.yml"
    path.write_text(path.read_text().replace("attack.t9999", "attack.t1033"))
    assert import_rules([str(catalog / "rules")]).updated == 1
    assert not RuleFinding.objects.filter(rule__rule_id=OTHER, validator="attacktag").exists()
    # Related rules are recomputed with the stored rules' indicators read back.
    first = RelatedRule.objects.filter(rule__rule_id=A, relation="similar").first()
    assert first is not None and first.other_sigma_id == COPY and first.score == 1.0


def test_regression_replay_is_stored(catalog: Path) -> None:
    run = RuleRegression.objects.get(rule__rule_id=TESTED)
    assert (run.tested, run.passed, run.samples, run.matches) == (True, True, 1, 1)
    assert run.provider == "Microsoft-Windows-Sysmon"
    assert "whoami.exe" in run.sample_json
    assert not RuleRegression.objects.filter(rule__rule_id=A).exists()


def test_a_rule_and_its_copy_are_each_others_first_related_rule(catalog: Path) -> None:
    def first(rule_id: str) -> str:
        row = RelatedRule.objects.filter(rule__rule_id=rule_id, relation="similar").first()
        assert row is not None
        return row.other_sigma_id

    assert first(A) == COPY
    assert first(COPY) == A
    top = RelatedRule.objects.get(rule__rule_id=A, other__rule_id=COPY, relation="similar")
    assert top.score == 1.0 and top.same_logsource and top.shared_count == 3


def test_related_links_are_resolved_both_ways(catalog: Path) -> None:
    out = RelatedRule.objects.get(rule__rule_id=OTHER, relation="derived")
    back = RelatedRule.objects.get(rule__rule_id=A, relation="derived")
    assert (out.direction, out.other_sigma_id) == ("out", A)
    assert (back.direction, back.other_sigma_id) == ("in", OTHER)


def test_compatible_logsources() -> None:
    assert compatible(("windows", "process_creation", ""), ("windows", "process_creation", ""))
    assert compatible(("windows", "", ""), ("windows", "process_creation", ""))
    assert not compatible(("windows", "ps_script", ""), ("windows", "process_creation", ""))
    assert not compatible(("linux", "", ""), ("windows", "process_creation", ""))


def test_rule_page_shows_checks_badge_and_related(client: Any, catalog: Path) -> None:
    page = client.get(f"/rules/{TESTED}/").content.decode()
    assert 'id="checks"' in page and ">Tested<" in page
    assert "Replay in sandbox" in page and 'name="text"' in page
    other = client.get(f"/rules/{OTHER}/").content.decode()
    assert "attacktag" in other and "attack.t9999" in other
    first = client.get(f"/rules/{A}/").content.decode()
    assert 'id="related"' in first and "Whoami Privileges Copy" in first
    assert "named by" in first  # OTHER names A as derived


def test_a_failing_replay_is_shown_as_such(client: Any, catalog: Path) -> None:
    RuleRegression.objects.filter(rule__rule_id=TESTED).update(passed=False, matches=0)
    page = client.get(f"/rules/{TESTED}/").content.decode()
    assert "Test fails" in page and ">Tested<" not in page


def test_related_rules_cost_one_query_whatever_their_number(catalog: Path) -> None:
    """The rule page's evidence (findings, replay, related rows) is one query, for a rule
    with eleven related rows as for one with none."""
    many = Rule.objects.get(rule_id=A)
    RelatedRule.objects.bulk_create(
        RelatedRule(rule=many, other=many, other_sigma_id=A, relation="similar", rank=5 + n)
        for n in range(10)
    )
    RelatedRule.objects.filter(rule__rule_id=TESTED).delete()
    counts = []
    for rule_id in (A, TESTED):
        target = Rule.objects.get(rule_id=rule_id)
        with CaptureQueriesContext(connection) as queries:
            rule_analysis(target, False)
        counts.append(len(queries))
    assert counts[0] == counts[1]
    with CaptureQueriesContext(connection) as queries:
        evidence = load_evidence(many.pk)
    assert len(queries) == 1 and len(evidence.similar) == 13


def test_quality_page_totals(client: Any, catalog: Path) -> None:
    page = client.get("/quality/").content.decode()
    assert "attacktag" in page
    assert f"/rules/{OTHER}/#checks" in page
    duplicates = client.get("/quality/duplicates/").content.decode()
    assert "Whoami Privileges Copy" in duplicates


def test_rule_list_facets(client: Any, catalog: Path) -> None:
    listed = client.get("/rules/?check=attacktag").content.decode()
    assert "Whoami Other" in listed and "Whoami Privileges Copy" not in listed
    tested = client.get("/rules/?regression=tested").content.decode()
    assert "Tested Whoami" in tested and "Whoami Other" not in tested
    page = client.get("/rules/").content.decode()
    assert "Has findings" in page and "Has a regression test" in page


def test_rule_api_has_findings_regression_and_related(client: Any, catalog: Path) -> None:
    data = client.get(f"/api/rules/{OTHER}/").json()
    assert {"validator", "severity", "message", "line"} == set(data["findings"][0])
    assert data["regression"] == {"tested": False, "passed": False, "samples": 0,
                                  "matches": 0, "declared": None}  # fmt: skip
    assert data["related"][0]["id"] == A and data["related"][0]["direction"] == "out"
    tested = client.get(f"/api/rules/{TESTED}/").json()["regression"]
    assert (tested["tested"], tested["passed"], tested["samples"], tested["matches"]) == (
        True, True, 1, 1,
    )  # fmt: skip
    related = client.get(f"/api/rules/{A}/related/").json()
    assert related["similar"][0]["id"] == COPY and related["similar"][0]["duplicate"]
    assert client.get("/api/rules/nope/related/").json()["parameter"] is None


def test_api_filters(client: Any, catalog: Path) -> None:
    ids = {r["id"] for r in client.get("/api/rules/?check=any").json()["results"]}
    assert OTHER in ids and A not in ids
    ids = {r["id"] for r in client.get("/api/rules/?regression=passed").json()["results"]}
    assert ids == {TESTED}
    bad = client.get("/api/rules/?regression=maybe")
    assert bad.status_code == 400 and bad.json()["parameter"] == "regression"


def test_replay_in_sandbox_posts_the_sample_and_matches(client: Any, catalog: Path) -> None:
    import html
    import re

    page = client.get(f"/rules/{TESTED}/").content.decode()
    form = re.search(r'<form class="inline-form" method="post" action="([^"]+)">(.*?)</form>',
                     page, re.S)  # fmt: skip
    assert form is not None
    text = html.unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", form[2], re.S)[1])
    answer = client.post(form[1], {"rule_id": TESTED, "text": text}).content.decode()
    assert "Tested Whoami" in answer and "1 event" in answer


def test_an_unknown_validator_is_a_400_with_the_choices(client: Any, catalog: Path) -> None:
    answer = client.get("/api/rules/?check=atacktag").json()
    assert answer["parameter"] == "check"
    assert "attacktag" in answer["choices"] and "any" in answer["choices"]


def test_rules_a_release_removes_leave_no_related_row(db: None, tmp_path: Path) -> None:
    """Related rules are computed while the release is recorded; rules that release removes
    lose their rows both ways, and the rest keep theirs."""
    from catalog.releases import ReleaseSpec

    def release(name: str, texts: dict[str, str]) -> None:
        folder = factories.write_rule_files(tmp_path / name / "rules" / "windows", texts)
        import_rules([str(folder)], release=ReleaseSpec(name=name))

    other = rule(OTHER, "Whoami Other", related=None,
                 extra=f"related:\n    - id: {A}\n      type: derived\n")  # fmt: skip
    release("r2026-01-01", {"a.yml": rule(A, "Whoami Privileges"), "o.yml": other,
                            "c.yml": rule(COPY, "Whoami Privileges Copy")})  # fmt: skip
    assert RelatedRule.objects.filter(rule__rule_id=A, other__rule_id=COPY).exists()
    release("r2026-02-01", {"a.yml": rule(A, "Whoami Privileges", level="high"), "o.yml": other})
    assert not Rule.objects.filter(rule_id=COPY).exists()
    assert not RelatedRule.objects.filter(other_sigma_id=COPY).exists()
    kept = set(RelatedRule.objects.values_list("rule__rule_id", "other_sigma_id", "relation"))
    assert {(A, OTHER, "similar"), (OTHER, A, "derived"), (A, OTHER, "derived")} <= kept
