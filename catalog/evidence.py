"""The importer's evidence writes: validator findings, regression replays, related rules.

Runs inside the importer's transaction, right after :func:`catalog.import_rows.write_plan`.
Findings and replays were computed by the parse step (``ParsedRule.findings`` and
``ParsedRule.regression``, filled in :mod:`catalog.importer`'s workers); here they become rows,
keyed by the revision's content hash. Related rules depend on the whole catalog, so they are
recomputed for every rule whenever an import changed anything: a rule page then reads them in
one query instead of comparing the rule with the catalog on every view.

:func:`evidence_written` computes the related rules in a thread while the importer records
the release: that step mostly waits for PostgreSQL, so the comparison costs the import
almost nothing on a machine with a free core (the thread never touches the database).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings

from catalog.import_rows import ImportPlan, insert_rows
from catalog.models import RelatedRule, Rule, RuleFinding, RuleIndicator, RuleRegression
from rules.model import ParsedRule
from rules.regression import replay
from rules.similarity import IndexedRule, SimilarityIndex
from rules.validate import validate_rule, validator_names

RELATED_LIMIT = 10
SHARED_KEPT = 25  # shared identities stored per related pair (the count is kept whole)
_CHUNK = 900
_RELATED_COLUMNS = [
    "rule_id", "other_id", "other_sigma_id", "relation", "direction", "rank", "score",
    "shared", "shared_count", "same_logsource",
]  # fmt: skip

# (pk, rule_id, title, product, category, service, related): one row per catalog rule.
_RuleRow = tuple[int, str, str, str, str, str, list[dict[str, str]]]
Row = tuple[object, ...]


def write_evidence(plan: ImportPlan, *, catalog_changed: bool) -> None:
    """Store the findings and replays of the rules this import wrote; refresh related rules."""
    with evidence_written(plan, catalog_changed=catalog_changed):
        pass


@contextmanager
def evidence_written(plan: ImportPlan, *, catalog_changed: bool) -> Iterator[None]:
    """:func:`write_evidence`, with the related rules computed while the block runs.

    The related rules are those of the catalog as it is on entry; rules the block deletes
    (a snapshot release's removals) lose their rows, as the cascade would have removed them.
    """
    written = [(item.parsed, item.digest) for item in (*plan.new, *plan.changed)]
    _delete_for([item.pk for item in plan.changed])
    refresh = catalog_changed and evidence_enabled()
    if not refresh and not any(p.findings or p.regression for p, _ in written):
        yield  # nothing to write (an unchanged re-import, or the evidence turned off)
        return
    rules = _rule_rows()
    pk_by_id = {rule_id: pk for pk, rule_id, *_ in rules}
    _write_findings(written, pk_by_id)
    _write_regressions(written, pk_by_id)
    if not refresh:
        yield
        return
    RelatedRule.objects.all().delete()
    similar = _similar_pending(rules, {parsed.id: parsed for parsed, _ in written})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="related") as pool:
        rows: Future[list[Row]] = pool.submit(lambda: list(similar))
        yield
        found = rows.result()
    found.extend(_link_rows([(rule[1], rule[6]) for rule in rules], pk_by_id))
    insert_rows(RelatedRule, _RELATED_COLUMNS, _surviving(found))


def _rule_rows() -> list[_RuleRow]:
    return list(
        Rule.objects.values_list("pk", "rule_id", "title", "product", "category", "service",
                                 "related")
    )  # fmt: skip


def _surviving(rows: list[Row]) -> list[Row]:
    """Rows whose rules both still exist (columns 0 and 1 are the two rule pks)."""
    alive = set(Rule.objects.values_list("pk", flat=True))
    return [row for row in rows if row[0] in alive and (row[1] is None or row[1] in alive)]


def _delete_for(rule_pks: list[int]) -> None:
    for start in range(0, len(rule_pks), _CHUNK):
        chunk = rule_pks[start : start + _CHUNK]
        RuleFinding.objects.filter(rule_id__in=chunk).delete()
        RuleRegression.objects.filter(rule_id__in=chunk).delete()


def _write_findings(written: Sequence[tuple[ParsedRule, str]], pk_by_id: dict[str, int]) -> None:
    insert_rows(
        RuleFinding,
        ["rule_id", "content_hash", "position", "validator", "severity", "message", "line"],
        [
            (pk_by_id[parsed.id], digest, position, f.validator[:100], f.severity[:20],
             f.message, f.line)
            for parsed, digest in written
            for position, f in enumerate(parsed.findings)
        ],
    )  # fmt: skip


def _write_regressions(written: Sequence[tuple[ParsedRule, str]], pk_by_id: dict[str, int]) -> None:
    rows = []
    for parsed, digest in written:
        outcome = parsed.regression
        if outcome is None:
            continue
        rows.append(
            (pk_by_id[parsed.id], digest, outcome.declared[:1000], outcome.tested,
             outcome.passed, outcome.samples, outcome.matches, outcome.provider[:200],
             outcome.error, json.dumps(outcome.to_dict()["tests"]), outcome.sample_json)
        )  # fmt: skip
    insert_rows(
        RuleRegression,
        ["rule_id", "content_hash", "declared", "tested", "passed", "samples", "matches",
         "provider", "error", "tests", "sample_json"],
        rows,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Related rules
# --------------------------------------------------------------------------------------------


Label = tuple[str, str, str]


def compatible(a: Label, b: Label) -> bool:
    """Logsources whose rules can see the same events: equal, or one is the other's product
    alone (``windows`` covers ``windows/process_creation``)."""
    if a == b:
        return True
    generic_a, generic_b = not (a[1] or a[2]), not (b[1] or b[2])
    return a[0] == b[0] and (generic_a or generic_b)


def refresh_related(parsed: Mapping[str, ParsedRule] | None = None) -> None:
    """Recompute every rule's related rules (similar by indicators, ``related:`` links).

    ``parsed``: rules whose identities are taken from memory rather than read back (the
    importer passes the rules it wrote: a full import then reads no indicator row at all).
    """
    RelatedRule.objects.all().delete()
    rules = _rule_rows()
    pk_of = {rule_id: pk for pk, rule_id, *_ in rules}
    rows = list(_similar_pending(rules, parsed or {}))
    rows.extend(_link_rows([(rule[1], rule[6]) for rule in rules], pk_of))
    insert_rows(RelatedRule, _RELATED_COLUMNS, rows)


def _similar_pending(rules: list[_RuleRow], parsed: Mapping[str, ParsedRule]) -> Iterable[Row]:
    """The similar-rule rows, still to be computed: everything read from the database is
    read now, so the rows can be computed by a thread without a connection."""
    pk_of = {rule_id: pk for pk, rule_id, *_ in rules}
    labels: dict[str, Label] = {rule_id: (p, c, s) for _, rule_id, _, p, c, s, _ in rules}
    titles = {rule_id: title for _, rule_id, title, *_ in rules}
    identities = _identities(pk_of, parsed)
    return _similar_rows(labels, titles, identities, pk_of)


def _identities(
    pk_of: dict[str, int], parsed: Mapping[str, ParsedRule]
) -> dict[str, set[tuple[str, str, str]]]:
    found: dict[str, set[tuple[str, str, str]]] = {
        rule_id: {i.identity for i in parsed[rule_id].indicators} if rule_id in parsed else set()
        for rule_id in pk_of
    }
    unread = [pk for rule_id, pk in pk_of.items() if rule_id not in parsed]
    if not unread:
        return found
    sigma_of = {pk: rule_id for rule_id, pk in pk_of.items() if rule_id not in parsed}
    links = RuleIndicator.objects.values_list(
        "rule_id", "indicator__field", "indicator__kind", "indicator__value_key"
    )
    # Few stored rules: ask for theirs; many: one scan, skipping the rules just written.
    if len(unread) <= 2000:
        links = links.filter(rule_id__in=unread)
    for rule_pk, field, kind, value_key in links.iterator(chunk_size=5000):
        if rule_pk in sigma_of:
            found[sigma_of[rule_pk]].add((field, kind, value_key))
    return found


def _similar_rows(
    labels: dict[str, Label],
    titles: dict[str, str],
    identities: dict[str, set[tuple[str, str, str]]],
    pk_of: dict[str, int],
) -> Iterable[tuple[object, ...]]:
    """Top similar rules per rule, each compared only with rules of a compatible logsource:
    one :class:`SimilarityIndex` per distinct logsource, holding the compatible rules."""
    by_label: dict[Label, list[str]] = defaultdict(list)
    for rule_id, label in labels.items():
        by_label[label].append(rule_id)
    for label, members in by_label.items():
        pool = [
            rule_id
            for other, ids in by_label.items()
            if compatible(label, other)
            for rule_id in ids
        ]
        index = SimilarityIndex.build(
            IndexedRule(r, titles[r], "/".join(labels[r]), frozenset(identities[r])) for r in pool
        )
        for rule_id in members:
            for rank, found in enumerate(index.similar_to_rule(rule_id, limit=RELATED_LIMIT)):
                shared = [list(identity) for identity in found.shared[:SHARED_KEPT]]
                yield (pk_of[rule_id], pk_of[found.id], found.id, "similar", "", rank,
                       round(found.score, 6), json.dumps(shared), len(found.shared),
                       found.same_logsource)  # fmt: skip


def _link_rows(
    declared: list[tuple[str, list[dict[str, str]]]], pk_of: dict[str, int]
) -> Iterable[tuple[object, ...]]:
    """Each ``related:`` entry both ways: ``out`` on the rule naming it, ``in`` on the other."""
    rank: dict[int, int] = defaultdict(int)
    for rule_id, entries in declared:
        for entry in entries or []:
            other = str(entry.get("id", ""))[:100]
            kind = str(entry.get("type", "") or "related")[:30]
            if not other or other == rule_id:
                continue
            source_pk, target_pk = pk_of[rule_id], pk_of.get(other)
            yield (source_pk, target_pk, other, kind, "out", rank[source_pk], 0.0, "[]", 0,
                   False)  # fmt: skip
            rank[source_pk] += 1
            if target_pk is not None:
                yield (target_pk, source_pk, rule_id, kind, "in", rank[target_pk], 0.0, "[]",
                       0, False)  # fmt: skip
                rank[target_pk] += 1


# --------------------------------------------------------------------------------------------
# The parse step (runs in the importer's worker processes)
# --------------------------------------------------------------------------------------------


def evidence_enabled() -> bool:
    """``IMPORT_EVIDENCE`` (default on): the import benchmark turns it off for its baseline."""
    return bool(getattr(settings, "IMPORT_EVIDENCE", True))


def prepare_evidence() -> None:
    """Build the validators (and load their offline data) in this process."""
    validator_names()


def add_evidence(parsed: ParsedRule, file_path: str) -> None:
    """Validate ``parsed`` and replay its regression samples; ``file_path`` is where it was
    read (``archive.zip!member`` for archive entries, which are validated, not replayed)."""
    parsed.findings = validate_rule(parsed.sigma, parsed.raw_yaml, parsed.source_path)
    parsed.regression = replay(parsed, file_path)
