"""Catalog models: rules and what the engine extracted from them.

Rows are written only by :func:`catalog.services.import_rules`, which turns engine
dataclasses (:mod:`rules.model`) into these models inside one transaction.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.urls import reverse


def identity_hash(field: str, kind: str, value_key: str) -> str:
    """A fixed-width key for (field, kind, value_key): values can be longer than an index row."""
    return hashlib.sha1(f"{field}\x1f{kind}\x1f{value_key}".encode()).hexdigest()


class Tag(models.Model):
    """A rule tag, e.g. ``attack.t1571`` (namespace ``attack``, value ``t1571``)."""

    name = models.CharField(max_length=200, unique=True)
    namespace = models.CharField(max_length=50, db_index=True)
    value = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tactic(models.Model):
    """An ATT&CK tactic a rule is tagged with (``attack.command-and-control``)."""

    shortname = models.CharField(max_length=100, unique=True)
    attack_id = models.CharField(max_length=20, blank=True)
    name = models.CharField(max_length=200, blank=True)
    known = models.BooleanField(default=True)

    class Meta:
        ordering = ["shortname"]

    def __str__(self) -> str:
        return self.name or self.shortname


class Technique(models.Model):
    """An ATT&CK technique or sub-technique a rule is tagged with (``attack.t1059.001``)."""

    attack_id = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=200, blank=True)
    parent_id = models.CharField(max_length=20, blank=True)
    parent_name = models.CharField(max_length=200, blank=True)
    tactics = models.JSONField(default=list)
    known = models.BooleanField(default=True)

    class Meta:
        ordering = ["attack_id"]

    def __str__(self) -> str:
        return f"{self.attack_id} {self.name}".strip()

    def get_absolute_url(self) -> str:
        return reverse("catalog:technique-detail", args=[self.attack_id])


class Rule(models.Model):
    """One Sigma detection rule, keyed by its Sigma ``id``.

    ``rule_id`` is the Sigma id (a UUID string, used in URLs), not a foreign-key column:
    on the child models (``Stage.rule_id``, ``Conversion.rule_id``, ...) ``rule_id`` is
    Django's column for the ``rule`` foreign key and holds this model's integer ``pk``.
    """

    rule_id = models.CharField(max_length=100, unique=True)
    title = models.CharField(max_length=500)
    status = models.CharField(max_length=30, blank=True, db_index=True)
    level = models.CharField(max_length=30, blank=True, db_index=True)
    description = models.TextField(blank=True)
    author = models.TextField(blank=True)
    date = models.CharField(max_length=30, blank=True)
    modified = models.CharField(max_length=30, blank=True)
    references = models.JSONField(default=list)
    falsepositives = models.JSONField(default=list)
    related = models.JSONField(default=list)
    product = models.CharField(max_length=100, blank=True, db_index=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    service = models.CharField(max_length=100, blank=True, db_index=True)
    definition = models.TextField(blank=True)
    detection = models.JSONField(default=dict)
    conditions = models.JSONField(default=list)
    unsupported = models.JSONField(default=list)
    raw_yaml = models.TextField()
    source_path = models.CharField(max_length=1000, blank=True)
    rule_set = models.CharField(max_length=100, blank=True, db_index=True)
    content_hash = models.CharField(max_length=64, db_index=True)
    revision = models.PositiveIntegerField(default=1)
    search_text = models.TextField(blank=True)
    search_vector = SearchVectorField(null=True, editable=False)
    tags = models.ManyToManyField(Tag, related_name="rules", blank=True)
    tactics = models.ManyToManyField(Tactic, related_name="rules", blank=True)
    techniques = models.ManyToManyField(Technique, related_name="rules", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("catalog:rule-detail", args=[self.rule_id])

    @property
    def logsource_label(self) -> str:
        return "/".join(p for p in (self.product, self.category, self.service) if p)


class Stage(models.Model):
    """Stage 0 (the condition as written) or one top-level AND conjunct of it."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="stages")
    group = models.PositiveSmallIntegerField(default=0)
    index = models.PositiveSmallIntegerField()
    text = models.TextField()
    identifiers = models.JSONField(default=list)
    yaml = models.TextField(blank=True)
    negated = models.BooleanField(default=False)

    class Meta:
        ordering = ["rule", "group", "index"]

    def __str__(self) -> str:
        return f"stage {self.group}.{self.index}: {self.text}"


class Predicate(models.Model):
    """A (field, kind, value) identity shared by every rule that uses it (abstract).

    ``value_key`` is casefolded except for regex and ``cased`` kinds. ``rule_count`` is the
    number of distinct rules using it, refreshed by each import (the "Corpus" column).
    :class:`Indicator` and :class:`Exclusion` differ only in their link table and URL.
    """

    detail_url_name = ""

    field = models.TextField(blank=True)
    kind = models.CharField(max_length=100)
    value = models.TextField()
    value_key = models.TextField()
    identity = models.CharField(max_length=40, unique=True)
    rule_count = models.PositiveIntegerField(default=0, db_index=True)

    class Meta:
        abstract = True
        ordering = ["-rule_count", "field", "kind", "value_key"]

    def __str__(self) -> str:
        return f"{self.field or 'keywords'} {self.kind} {self.value}"

    def get_absolute_url(self) -> str:
        return reverse(self.detail_url_name, args=[self.pk])


class RulePredicate(models.Model):
    """A predicate as one rule wrote it (abstract): the value keeps that rule's case.

    Subclasses add the ``rule`` foreign key and the one to their predicate model (their
    related names differ, so they cannot be declared here without a migration).
    """

    value = models.TextField()
    identifier = models.CharField(max_length=200)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ["rule", "position"]

    def __str__(self) -> str:
        return self.value


class Indicator(Predicate):
    """A value a rule looks for (outside any top-level NOT)."""

    detail_url_name = "catalog:indicator-detail"
    rules = models.ManyToManyField(Rule, through="RuleIndicator", related_name="indicators")


class Exclusion(Predicate):
    """A value that rules suppress under a top-level NOT."""

    detail_url_name = "catalog:exclusion-detail"
    rules = models.ManyToManyField(Rule, through="RuleExclusion", related_name="exclusions")


def _link(to: type[models.Model] | str, related_name: str) -> models.ForeignKey[Any]:
    return models.ForeignKey(to, on_delete=models.CASCADE, related_name=related_name)


class RuleIndicator(RulePredicate):
    """An indicator as one rule wrote it."""

    rule = _link(Rule, "rule_indicators")
    indicator = _link(Indicator, "rule_indicators")


class RuleExclusion(RulePredicate):
    """An exclusion as one rule wrote it."""

    rule = _link(Rule, "rule_exclusions")
    exclusion = _link(Exclusion, "rule_exclusions")


class ImportRun(models.Model):
    """One run of the importer: what it read, what it changed, what it refused."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=30, default="command")
    sources = models.JSONField(default=list)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    pruned = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)
    errors = models.JSONField(default=list)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.status})"


class Conversion(models.Model):
    """A rule converted for one SIEM target: the conversion cache.

    Keyed by (rule, revision, target, pipeline, output format, backend version): a page view
    of an unchanged rule reads this row instead of converting, and a new rule revision or a
    backend/pipeline upgrade (part of ``backend_version``) simply misses. Written only by
    :mod:`catalog.conversion`.

    ``rule_id`` here is the foreign key's column (the Rule's ``pk``); the Sigma id is
    ``rule.rule_id``.
    """

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="conversions")
    revision = models.PositiveIntegerField()
    target = models.CharField(max_length=50)
    pipeline = models.CharField(max_length=50)
    output_format = models.CharField(max_length=50, default="default")
    backend_version = models.CharField(max_length=255)
    outputs = models.JSONField(default=list)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True)
    seconds = models.FloatField(default=0)
    # The check of the query (rules.convert.verify): which parser, its message when the query
    # does not parse, and the certain fixes applied to ``outputs``.
    verifier = models.CharField(max_length=20, blank=True)
    problem = models.TextField(blank=True)
    fixes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rule", "target", "pipeline", "output_format"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "rule",
                    "revision",
                    "target",
                    "pipeline",
                    "output_format",
                    "backend_version",
                ],
                name="conversion_cache_key",
            )
        ]
        indexes = [
            models.Index(
                fields=["target", "pipeline", "output_format", "backend_version"],
                name="conversion_report",
            )
        ]

    def __str__(self) -> str:
        state = f"failed ({self.error_kind})" if self.error else "ok"
        return f"{self.rule_id} -> {self.target}/{self.pipeline}/{self.output_format}: {state}"


class Release(models.Model):
    """One import recorded as a release of a named source (rule set), e.g. ``r2026-04-01``.

    ``sequence`` is the import order within the source: each release is compared with the one
    before it. The id lists are what the release changed (``rule_ids`` is every rule present
    in it), so a release's changelog is read without recomputing anything. Written only by
    :mod:`catalog.releases`.
    """

    source = models.CharField(max_length=100, default="default")
    name = models.CharField(max_length=200)
    sequence = models.PositiveIntegerField()
    released_at = models.DateTimeField()
    imported_at = models.DateTimeField(auto_now_add=True)
    rule_ids = models.JSONField(default=list)
    added = models.JSONField(default=list)
    modified = models.JSONField(default=list)
    removed = models.JSONField(default=list)
    deprecated = models.JSONField(default=list)
    counts = models.JSONField(default=dict)
    # Named by the import date (no --release): never makes a dated release "older".
    automatic = models.BooleanField(default=False)

    class Meta:
        ordering = ["-released_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["source", "name"], name="release_source_name"),
            models.UniqueConstraint(fields=["source", "sequence"], name="release_source_sequence"),
        ]

    def __str__(self) -> str:
        return self.name if self.source == "default" else f"{self.source} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("catalog:release-detail", args=[self.name])


class RuleRevision(models.Model):
    """One distinct content of a rule, with the release it first appeared in.

    Keyed by the Sigma id (``sigma_id``), not a foreign key: the history outlives the rule's
    row when a release removes it. ``diff`` is the semantic diff (:mod:`rules.diff`) from the
    previous revision, ``null`` for the first.
    """

    sigma_id = models.CharField(max_length=100)
    number = models.PositiveIntegerField()
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="revisions")
    content_hash = models.CharField(max_length=64)
    source_path = models.CharField(max_length=1000, blank=True)
    yaml = models.TextField()
    title = models.CharField(max_length=500)
    level = models.CharField(max_length=30, blank=True)
    status = models.CharField(max_length=30, blank=True)
    logsource = models.JSONField(default=dict)
    tags = models.JSONField(default=list)
    stages = models.JSONField(default=list)
    indicators = models.JSONField(default=list)
    exclusions = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)
    change_class = models.CharField(max_length=20, blank=True)
    diff = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["sigma_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["sigma_id", "number"], name="revision_rule_number")
        ]

    def __str__(self) -> str:
        return f"{self.sigma_id} r{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("catalog:rule-revision", args=[self.sigma_id, self.number])


# --- Stored release changelogs (issue 12): the changes API reads one row --------------------


class ReleaseChanges(models.Model):
    """A release's changes API answer (against the release before it), rendered as JSON by
    :mod:`catalog.releases` when an import writes the release, so the API serves it as is.

    Rewritten whenever an import changes the release or ``--force`` reorders its source's
    releases, each time with a new random ``version``: the versions of a source's answers
    name the state of its history (the ``?since=`` answers are cached under them).
    """

    release = models.OneToOneField(Release, on_delete=models.CASCADE, related_name="changelog")
    payload = models.TextField()
    version = models.CharField(max_length=32)

    def __str__(self) -> str:
        return f"changes of {self.release_id}"


# --------------------------------------------------------------------------------------------
# Issue 14: evidence on every rule (written at import by catalog.evidence)
# --------------------------------------------------------------------------------------------


class RuleFinding(models.Model):
    """One validator finding (:mod:`rules.validate`) on a rule's current revision.

    ``content_hash`` names the revision it was found on (``RuleRevision.content_hash``):
    findings are replaced whenever the rule's file changes.
    """

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="findings")
    content_hash = models.CharField(max_length=64)
    position = models.PositiveSmallIntegerField(default=0)
    validator = models.CharField(max_length=100, db_index=True)
    severity = models.CharField(max_length=20, db_index=True)
    message = models.TextField()
    line = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["rule_id", "position"]

    def __str__(self) -> str:
        return f"{self.validator}: {self.message}"


class RuleRegression(models.Model):
    """The replay of a rule's regression samples (:mod:`rules.regression`) at import.

    One row per rule that declares ``regression_tests_path``; ``tested`` is False when the
    corpus did not ship the data (``error`` says why).
    """

    rule = models.OneToOneField(Rule, on_delete=models.CASCADE, related_name="regression")
    content_hash = models.CharField(max_length=64)
    declared = models.CharField(max_length=1000)
    tested = models.BooleanField(default=False, db_index=True)
    passed = models.BooleanField(default=False, db_index=True)
    samples = models.PositiveIntegerField(default=0)
    matches = models.PositiveIntegerField(default=0)
    provider = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    tests = models.JSONField(default=list)
    sample_json = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.declared} ({'passed' if self.passed else 'not passed'})"


class RelatedRule(models.Model):
    """A rule related to another, precomputed at import so a rule page reads them at once.

    ``relation`` is ``similar`` (shares indicator identities: ``score`` is the Jaccard score,
    ``shared`` the identities) or a Sigma ``related:`` type (``derived``, ``obsolete``,
    ``merged``, ``renamed``, ``similar``...) with ``direction`` ``out`` (this rule names the
    other) or ``in`` (the other rule names this one). ``other`` is null when the named id is
    not in the catalog.
    """

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="related_rules")
    other = models.ForeignKey(
        Rule, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    other_sigma_id = models.CharField(max_length=100)
    relation = models.CharField(max_length=30)
    direction = models.CharField(max_length=3, blank=True)
    rank = models.PositiveSmallIntegerField(default=0)
    score = models.FloatField(default=0, db_index=True)
    shared = models.JSONField(default=list)
    shared_count = models.PositiveIntegerField(default=0)
    same_logsource = models.BooleanField(default=False)

    class Meta:
        ordering = ["rule_id", "rank"]

    def __str__(self) -> str:
        return f"{self.relation} {self.other_sigma_id}"


# --- Workbench drafts (issue 13): rule drafts a signed-in user chose to save ---------------


class Draft(models.Model):
    """A rule draft saved from the workbench. Private: only its owner lists or opens it.

    Nothing typed in the workbench is stored unless the user presses "Save" (the share link
    keeps a draft in the URL fragment, which never reaches the server).
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workbench_drafts"
    )
    title = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]

    def __str__(self) -> str:
        return self.title or f"draft {self.pk}"


# --- Correlations and meta filters (issue 16): Sigma correlation and filter documents --------


class Correlation(models.Model):
    """A Sigma correlation document (``correlation:``), keyed by its Sigma ``id``.

    ``rules`` keeps the references as written (ids or names); :class:`CorrelationReference`
    rows say what each resolved to at import (a rule, or another correlation for chains).
    """

    correlation_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True, db_index=True)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    level = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=20, blank=True)
    type = models.CharField(max_length=30)
    timespan = models.CharField(max_length=20)
    seconds = models.FloatField()
    group_by = models.JSONField(default=list)
    condition = models.JSONField(default=dict)  # the condition as written (mapping or text)
    condition_text = models.CharField(max_length=500, blank=True)
    aliases = models.JSONField(default=dict)
    generate = models.BooleanField(default=False)
    document = models.JSONField(default=dict)  # the correlation document (for the engine)
    raw_yaml = models.TextField()  # the whole file (pySigma converts the collection from it)
    source_path = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "correlation_id"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("catalog:correlation-detail", args=[self.correlation_id])


class CorrelationReference(models.Model):
    """One entry of a correlation's ``rules``, resolved to a rule or a correlation."""

    correlation = models.ForeignKey(Correlation, on_delete=models.CASCADE, related_name="refs")
    position = models.PositiveSmallIntegerField()
    reference = models.CharField(max_length=200)
    rule = models.ForeignKey(
        Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="correlation_refs"
    )
    target = models.ForeignKey(
        Correlation, null=True, blank=True, on_delete=models.SET_NULL, related_name="used_by"
    )

    class Meta:
        ordering = ["correlation_id", "position"]

    def __str__(self) -> str:
        return self.reference


class MetaFilter(models.Model):
    """A Sigma meta filter document (``filter:``): suppresses matches of the rules it names."""

    filter_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    product = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=100, blank=True)
    service = models.CharField(max_length=100, blank=True)
    any_rule = models.BooleanField(default=False)
    references = models.JSONField(default=list)
    detection = models.JSONField(default=dict)
    condition = models.CharField(max_length=1000)
    raw_yaml = models.TextField()
    source_path = models.CharField(max_length=1000, blank=True)
    rules = models.ManyToManyField(Rule, blank=True, related_name="meta_filters")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "filter_id"]

    def __str__(self) -> str:
        return self.title
