"""Evidence reads (issue 14): a rule's checks, regression replay and related rules, and the
catalog-wide quality summary. Rows are written at import by :mod:`catalog.evidence`."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet

from catalog.models import RelatedRule, Rule, RuleFinding, RuleRegression
from rules.similarity import DUPLICATE_SCORE
from rules.validate import SKIPPED, validator_names

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
SANDBOX_SAMPLE_CHARS = 64 * 1024  # larger samples are not embedded in the rule page


@dataclass(slots=True)
class Evidence:
    """One rule's evidence as the rule page and the API show it."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    regression: dict[str, Any] | None = None
    similar: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)

    @property
    def related(self) -> dict[str, list[dict[str, Any]]]:
        return {"similar": self.similar, "links": self.links}

    def regression_api(self) -> dict[str, Any]:
        """The API's ``regression``: ``{"tested", "passed", "samples", "matches"}`` + detail."""
        if self.regression is None:
            return {"tested": False, "passed": False, "samples": 0, "matches": 0,
                    "declared": None}  # fmt: skip
        return {k: v for k, v in self.regression.items() if k != "sample_json"}


_FINDING, _REGRESSION, _RELATED = 0, 1, 2


@cache
def _evidence_sql(vendor: str) -> str:
    """Findings, the replay and related rows of one rule in one statement (one round trip,
    as :func:`catalog.queries.rules.load_rule_children` does for the other children).

    Shared columns: part, n1, n2, n3, n4, score, t1..t10 (text; JSON cast to text).
    """
    q = connection.ops.quote_name
    finding, run = q(RuleFinding._meta.db_table), q(RuleRegression._meta.db_table)
    related, rule = q(RelatedRule._meta.db_table), q(Rule._meta.db_table)
    text = "CAST({} AS TEXT)".format
    number = "CAST({} AS INTEGER)".format
    return (
        " UNION ALL ".join(
            [
                f"SELECT {_FINDING} AS part, f.position AS n1, f.line AS n2, 0 AS n3, 0 AS n4, "
                "0.0 AS score, f.validator AS t1, f.severity AS t2, f.message AS t3, '' AS t4, "
                "'' AS t5, '' AS t6, '' AS t7, '' AS t8, '' AS t9, '' AS t10 "
                f"FROM {finding} f WHERE f.rule_id = %s",
                f"SELECT {_REGRESSION}, g.samples, g.matches, {number('g.tested')}, "
                f"{number('g.passed')}, 0.0, g.declared, g.provider, g.error, g.sample_json, "
                f"{text('g.tests')}, '', '', '', '', '' FROM {run} g WHERE g.rule_id = %s",
                f"SELECT {_RELATED}, r.{q('rank')}, r.shared_count, {number('r.same_logsource')}, "
                f"CASE WHEN o.id IS NULL THEN 0 ELSE 1 END, r.score, r.relation, r.direction, "
                f"r.other_sigma_id, o.title, o.status, o.level, o.product, o.category, o.service, "
                f"{text('r.shared')} FROM {related} r LEFT JOIN {rule} o ON o.id = r.other_id "
                "WHERE r.rule_id = %s",
            ]
        )
        + " ORDER BY part, n1"
    )


def load_evidence(rule_pk: int) -> Evidence:
    """The rule's findings (in order), regression replay and related rules: one query."""
    with connection.cursor() as cursor:
        cursor.execute(_evidence_sql(connection.vendor), [rule_pk] * 3)
        rows = cursor.fetchall()
    evidence = Evidence()
    for part, n1, n2, n3, n4, score, *texts in rows:
        if part == _FINDING:
            evidence.findings.append(
                {"validator": texts[0], "severity": texts[1], "message": texts[2], "line": n2}
            )
        elif part == _REGRESSION:
            evidence.regression = {
                "tested": bool(n3), "passed": bool(n4), "samples": n1, "matches": n2,
                "declared": texts[0], "provider": texts[1], "error": texts[2],
                "tests": json.loads(texts[4] or "[]"), "sample_json": texts[3],
            }  # fmt: skip
        else:
            _add_related(evidence, n2, bool(n3), bool(n4), float(score or 0), texts)
    return evidence


def _add_related(
    evidence: Evidence, shared_count: int, same: bool, found: bool, score: float, t: list[Any]
) -> None:
    relation, direction, other_id, title, status, level = t[:6]
    item: dict[str, Any] = {
        "id": other_id,
        "title": title if found else None,
        "status": status if found else None,
        "level": level if found else None,
        "logsource": "/".join(p for p in t[6:9] if p) if found else None,
        "in_catalog": found,
    }
    if relation == "similar" and not direction:
        shared = json.loads(t[9] or "[]")
        item.update(
            score=score,
            shared=[{"field": f, "kind": k, "value": v} for f, k, v in shared],
            shared_count=shared_count,
            same_logsource=same,
            duplicate=same and score >= DUPLICATE_SCORE,
        )
        evidence.similar.append(item)
    else:
        item.update(type=relation, direction=direction)
        evidence.links.append(item)


def rule_evidence(rule: Rule) -> dict[str, Any]:
    """The rule page's Checks, Tested badge and Related sections (one query)."""
    evidence = load_evidence(rule.pk)
    findings = sorted(
        evidence.findings, key=lambda f: (SEVERITY_ORDER.get(f["severity"], 9), f["line"] or 0)
    )
    run = evidence.regression
    sample = run["sample_json"] if run else ""
    return {
        "findings": findings,
        "regression": run,
        "replay_text": sample if len(sample) <= SANDBOX_SAMPLE_CHARS else "",
        "related": evidence.related,
    }


# --------------------------------------------------------------------------------------------
# The quality page
# --------------------------------------------------------------------------------------------


def quality_summary(*, rules_per_validator: int = 50) -> dict[str, Any]:
    """Findings by validator (counts and the rules behind each) and regression outcomes."""
    by_validator = list(
        RuleFinding.objects.values("validator", "severity")
        .annotate(findings=Count("pk"), rules=Count("rule_id", distinct=True))
        .order_by("-findings", "validator")
    )
    behind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for validator, rule_id, title, message, line in RuleFinding.objects.order_by(
        "validator", "rule__title", "position"
    ).values_list("validator", "rule__rule_id", "rule__title", "message", "line"):
        if (validator, rule_id) in seen or len(behind[validator]) >= rules_per_validator:
            continue
        seen.add((validator, rule_id))
        behind[validator].append({"id": rule_id, "title": title, "message": message,
                                  "line": line})  # fmt: skip
    for row in by_validator:
        row["examples"] = behind.get(row["validator"], [])
    runs = regression_counts(RuleRegression.objects.all())
    failing = [
        {"id": rule_id, "title": title, "samples": samples, "matches": matches,
         "expected": [t.get("expected") for t in tests]}
        for rule_id, title, samples, matches, tests in (
            RuleRegression.objects.filter(tested=True, passed=False)
            .order_by("rule__title")
            .values_list("rule__rule_id", "rule__title", "samples", "matches", "tests")
        )
    ]  # fmt: skip
    return {
        "validators": by_validator,
        "findings": sum(row["findings"] for row in by_validator),
        "flagged_rules": RuleFinding.objects.values("rule_id").distinct().count(),
        "rules": Rule.objects.count(),
        "skipped": sorted(SKIPPED.items()),
        "validator_count": len(validator_names()),
        "duplicates": len(duplicate_pairs()),
        "regression": runs,
        "failing": failing,
    }


def regression_counts(runs: QuerySet[RuleRegression]) -> dict[str, int]:
    """``declared``, ``tested``, ``passed``, ``failed``, ``missing`` in one query."""
    tested = Q(tested=True)
    # Aliases differ from the field names: Django refuses an aggregate named like a field.
    counts = runs.aggregate(
        n_declared=Count("pk"),
        n_tested=Count("pk", filter=tested),
        n_passed=Count("pk", filter=tested & Q(passed=True)),
        n_failed=Count("pk", filter=tested & Q(passed=False)),
        n_missing=Count("pk", filter=Q(tested=False)),
    )
    return {key.removeprefix("n_"): value for key, value in counts.items()}


def duplicate_pairs(threshold: float = DUPLICATE_SCORE) -> list[dict[str, Any]]:
    """Rule pairs with the same logsource and an indicator Jaccard score of at least
    ``threshold``, each pair once, best first."""
    rows = (
        RelatedRule.objects.filter(
            relation="similar", direction="", same_logsource=True, score__gte=threshold
        )
        .select_related("rule", "other")
        .only(
            "score", "shared_count", "rule__rule_id", "rule__title", "rule__product",
            "rule__category", "rule__service", "other__rule_id", "other__title",
        )
        .order_by("-score", "rule__title")
    )  # fmt: skip
    pairs: list[dict[str, Any]] = []
    seen: set[frozenset[str]] = set()
    for row in rows:
        if row.other is None:
            continue
        key = frozenset((row.rule.rule_id, row.other.rule_id))
        if key in seen:
            continue
        seen.add(key)
        pairs.append(
            {"score": row.score, "shared": row.shared_count, "logsource": row.rule.logsource_label,
             "a": {"id": row.rule.rule_id, "title": row.rule.title},
             "b": {"id": row.other.rule_id, "title": row.other.title}}
        )  # fmt: skip
    return pairs
