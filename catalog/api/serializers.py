"""Serializers: brief rule items for lists, the full rule for its detail, indicators and
exclusions with their corpus counts, import runs, and the shapes of the computed endpoints
(ATT&CK, layer, events), which are built as dicts and documented here.

The read serializers declare their fields (for the OpenAPI schema) but build their output in
``to_representation`` directly: DRF's per-field machinery costs more than the queries of a
rule page. The schemathesis test checks every response against the declared schema.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from catalog.api import coverage
from catalog.api.detail import PredicateLink, RuleDetail
from catalog.models import Exclusion, ImportRun, Indicator, Rule
from catalog.queries.quality import load_evidence
from catalog.uploads import UPLOAD_SUFFIXES, is_rule_upload, upload_name

# A key that matches every lookup regex of the API (digits), replaced when building URLs.
_MARK = "918273645"
_DATETIME = serializers.DateTimeField()


class UrlBuilder:
    """Absolute URLs of one route for many objects: one ``reverse()``, then substitution.

    A list of 50 indicators needs 100 links; reversing each costs more than the query.
    """

    def __init__(self, request: Request | None, name: str) -> None:
        path = reverse(name, args=[_MARK])
        url = request.build_absolute_uri(path) if request is not None else path
        self.head, self.tail = url.rsplit(_MARK, 1)

    def __call__(self, key: object) -> str:
        return f"{self.head}{quote(str(key), safe='-._~')}{self.tail}"


def url_builder(context: dict[str, Any], name: str) -> UrlBuilder:
    """The request's builder for route ``name``, cached in the serializer context."""
    cache = context.setdefault("url_builders", {})
    if name not in cache:
        cache[name] = UrlBuilder(context.get("request"), name)
    return cache[name]


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


class LogsourceBriefSerializer(serializers.Serializer):
    product = serializers.CharField()
    category = serializers.CharField()
    service = serializers.CharField()


class LogsourceSerializer(LogsourceBriefSerializer):
    definition = serializers.CharField()
    label = serializers.CharField(source="logsource_label")


class RuleBriefSerializer(serializers.Serializer):
    """A rule in a list: enough to choose it, with a link to the full rule."""

    id = serializers.CharField(source="rule_id", help_text="The Sigma rule id")
    url = serializers.SerializerMethodField()
    title = serializers.CharField()
    status = serializers.CharField()
    level = serializers.CharField()
    logsource = LogsourceBriefSerializer(source="*")
    rule_set = serializers.CharField()
    date = serializers.CharField()
    modified = serializers.CharField()
    tags = serializers.SerializerMethodField()

    def get_url(self, rule: Rule) -> str:
        return url_builder(self.context, "api:rule-detail")(rule.rule_id)

    def get_tags(self, rule: Rule) -> list[str]:
        return [tag.name for tag in rule.tags.all()]

    def brief(self, rule: Rule, tags: list[str]) -> dict[str, Any]:
        return {
            "id": rule.rule_id,
            "url": self.get_url(rule),
            "title": rule.title,
            "status": rule.status,
            "level": rule.level,
            "logsource": {
                "product": rule.product,
                "category": rule.category,
                "service": rule.service,
            },
            "rule_set": rule.rule_set,
            "date": rule.date,
            "modified": rule.modified,
            "tags": tags,
        }

    def to_representation(self, rule: Rule) -> dict[str, Any]:
        return self.brief(rule, self.get_tags(rule))


class RulePredicateSerializer(serializers.Serializer):
    """An indicator or exclusion as one rule wrote it, with its catalog-wide identity."""

    id = serializers.IntegerField(help_text="Indicator (or exclusion) id")
    url = serializers.URLField()
    rules = serializers.URLField(help_text="Rules sharing this identity")
    field = serializers.CharField(help_text="Empty for keyword searches")
    kind = serializers.CharField()
    value = serializers.CharField(help_text="The value as this rule wrote it")
    identifier = serializers.CharField(help_text="Detection identifier it comes from")
    corpus = serializers.IntegerField(help_text="Number of catalog rules with this identity")


class StageSerializer(serializers.Serializer):
    group = serializers.IntegerField()
    index = serializers.IntegerField()
    text = serializers.CharField()
    identifiers = serializers.ListField(child=serializers.CharField())
    yaml = serializers.CharField()
    negated = serializers.BooleanField()


class TacticRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    shortname = serializers.CharField()
    name = serializers.CharField()
    url = serializers.URLField()


class TechniqueRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    full_name = serializers.CharField()
    parent_id = serializers.CharField(allow_null=True)
    url = serializers.URLField()


class CoverageRowSerializer(serializers.Serializer):
    tactic = TacticRefSerializer()
    tagged = serializers.BooleanField(help_text="False: shown because of a technique's tactic")
    techniques = TechniqueRefSerializer(many=True)


class AttackEntitySerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.CharField()
    name = serializers.CharField()
    url = serializers.URLField()


class UnknownAttackTagSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.CharField()


class AttackCoverageSerializer(serializers.Serializer):
    rows = CoverageRowSerializer(many=True)
    entities = AttackEntitySerializer(many=True)
    unknown = UnknownAttackTagSerializer(many=True)


class EventSourceSerializer(serializers.Serializer):
    provider = serializers.CharField()
    provider_display = serializers.CharField()
    channel = serializers.CharField()
    channels = serializers.ListField(child=serializers.CharField())
    event_id = serializers.IntegerField(allow_null=True, help_text="Null: every event")
    event_label = serializers.CharField()
    title = serializers.CharField()


class EventCoverageSerializer(serializers.Serializer):
    sources = EventSourceSerializer(many=True)
    requirement = serializers.CharField(allow_null=True)


# Issue 14: evidence on a rule (catalog.queries.quality builds these dicts).


class FindingSerializer(serializers.Serializer):
    validator = serializers.CharField(help_text="pySigma or SigmaHQ validator identifier")
    severity = serializers.ChoiceField(choices=["low", "medium", "high"])
    message = serializers.CharField()
    line = serializers.IntegerField(allow_null=True, help_text="1-based YAML line (best effort)")


class RegressionTestSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    provider = serializers.CharField()
    path = serializers.CharField()
    expected = serializers.IntegerField(allow_null=True, help_text="match_count; null: >= 1")
    samples = serializers.IntegerField()
    matches = serializers.IntegerField()
    passed = serializers.BooleanField()
    error = serializers.CharField()


class RegressionSerializer(serializers.Serializer):
    tested = serializers.BooleanField(help_text="The sample events were found and replayed")
    passed = serializers.BooleanField()
    samples = serializers.IntegerField(help_text="Events replayed")
    matches = serializers.IntegerField(help_text="Events the engine matched the rule on")
    declared = serializers.CharField(allow_null=True, help_text="regression_tests_path")
    provider = serializers.CharField(required=False)
    error = serializers.CharField(required=False, help_text="Why it was not tested")
    tests = RegressionTestSerializer(many=True, required=False)


class SharedIndicatorSerializer(serializers.Serializer):
    field = serializers.CharField()
    kind = serializers.CharField()
    value = serializers.CharField()


class RelatedRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField(allow_null=True)
    status = serializers.CharField(allow_null=True)
    level = serializers.CharField(allow_null=True)
    logsource = serializers.CharField(allow_null=True)
    in_catalog = serializers.BooleanField()


class RelatedLinkSerializer(RelatedRefSerializer):
    type = serializers.CharField(help_text="derived, obsolete, merged, renamed, similar")
    direction = serializers.ChoiceField(
        choices=["out", "in"], help_text="out: this rule names it; in: it names this rule"
    )


class SimilarRuleSerializer(RelatedRefSerializer):
    score = serializers.FloatField(help_text="Jaccard score over indicator identities")
    shared = SharedIndicatorSerializer(many=True, help_text="Shared indicators (first 25)")
    shared_count = serializers.IntegerField()
    same_logsource = serializers.BooleanField()
    duplicate = serializers.BooleanField(help_text="Same logsource and score >= 0.9")


class RelatedRulesSerializer(serializers.Serializer):
    similar = SimilarRuleSerializer(many=True, help_text="Top 10, compatible logsources")
    links = RelatedLinkSerializer(many=True, help_text="related: entries, both ways")


class RuleSerializer(RuleBriefSerializer):
    """The full rule: metadata, YAML, logsource, ATT&CK and event coverage, stages, and its
    indicators and exclusions with their corpus counts."""

    web_url = serializers.SerializerMethodField()
    description = serializers.CharField()
    author = serializers.CharField()
    references = serializers.ListField(child=serializers.CharField())
    falsepositives = serializers.ListField(child=serializers.CharField())
    related = RelatedLinkSerializer(many=True, help_text="related: entries, both ways")
    similar = SimilarRuleSerializer(many=True, help_text="Rules sharing indicators (top 10)")
    findings = FindingSerializer(many=True)
    regression = RegressionSerializer()
    logsource = LogsourceSerializer(source="*")
    source_path = serializers.CharField()
    revision = serializers.IntegerField()
    content_hash = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    detection = serializers.JSONField()
    conditions = serializers.ListField(child=serializers.CharField())
    unsupported = serializers.ListField(child=serializers.CharField())
    raw_yaml = serializers.CharField()
    attack = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()
    stages = StageSerializer(many=True)
    indicators = serializers.SerializerMethodField()
    exclusions = serializers.SerializerMethodField()

    def get_web_url(self, rule: Rule) -> str:
        request = self.context.get("request")
        path = rule.get_absolute_url()
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(AttackCoverageSerializer)
    def get_attack(self, detail: RuleDetail) -> dict[str, Any]:
        return coverage.attack_coverage(detail.tags)

    @extend_schema_field(EventCoverageSerializer)
    def get_events(self, detail: RuleDetail) -> dict[str, Any]:
        indicators = ((i.field, i.kind, i.value) for i in detail.indicators)
        return coverage.event_coverage(detail.rule, indicators)

    @extend_schema_field(RulePredicateSerializer(many=True))
    def get_indicators(self, detail: RuleDetail) -> list[dict[str, Any]]:
        return self._predicates(detail.indicators, "indicator")

    @extend_schema_field(RulePredicateSerializer(many=True))
    def get_exclusions(self, detail: RuleDetail) -> list[dict[str, Any]]:
        return self._predicates(detail.exclusions, "exclusion")

    def _predicates(self, links: list[PredicateLink], route: str) -> list[dict[str, Any]]:
        detail_url = url_builder(self.context, f"api:{route}-detail")
        rules_url = url_builder(self.context, f"api:{route}-rules")
        return [
            {
                "id": link.id,
                "url": detail_url(link.id),
                "rules": rules_url(link.id),
                "field": link.field,
                "kind": link.kind,
                "value": link.value,
                "identifier": link.identifier,
                "corpus": link.corpus,
            }
            for link in links
        ]

    def to_representation(self, detail: RuleDetail) -> dict[str, Any]:  # type: ignore[override]
        rule = detail.rule
        data = self.brief(rule, detail.tags)
        data["logsource"].update(definition=rule.definition, label=rule.logsource_label)
        data.update(
            {
                "web_url": self.get_web_url(rule),
                "description": rule.description,
                "author": rule.author,
                "references": [str(r) for r in rule.references],
                "falsepositives": [str(f) for f in rule.falsepositives],
                # Issue 14: resolved both ways (a superset of the YAML's {id, type}).
                **_evidence(rule),
                "source_path": rule.source_path,
                "revision": rule.revision,
                "content_hash": rule.content_hash,
                "created_at": _DATETIME.to_representation(rule.created_at),
                "updated_at": _DATETIME.to_representation(rule.updated_at),
                "detection": rule.detection,
                "conditions": [str(c) for c in rule.conditions],
                "unsupported": [str(u) for u in rule.unsupported],
                "raw_yaml": rule.raw_yaml,
                "attack": self.get_attack(detail),
                "events": self.get_events(detail),
                "stages": detail.stages,
                "indicators": self.get_indicators(detail),
                "exclusions": self.get_exclusions(detail),
            }
        )
        return data


# --------------------------------------------------------------------------------------------
# Indicators and exclusions
# --------------------------------------------------------------------------------------------


class PredicateSerializer(serializers.Serializer):
    """An indicator (or exclusion) identity and how many catalog rules use it."""

    route = "indicator"

    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    field = serializers.CharField(help_text="Empty for keyword searches")
    kind = serializers.CharField()
    value = serializers.CharField(help_text="The value as first imported")
    corpus = serializers.IntegerField(source="rule_count", help_text="Rules using it")
    rules = serializers.SerializerMethodField(help_text="The rules using it")

    def get_url(self, item: Indicator | Exclusion) -> str:
        return url_builder(self.context, f"api:{self.route}-detail")(item.pk)

    def get_rules(self, item: Indicator | Exclusion) -> str:
        return url_builder(self.context, f"api:{self.route}-rules")(item.pk)

    def to_representation(self, item: Indicator | Exclusion) -> dict[str, Any]:
        return {
            "id": item.pk,
            "url": self.get_url(item),
            "field": item.field,
            "kind": item.kind,
            "value": item.value,
            "corpus": item.rule_count,
            "rules": self.get_rules(item),
        }


class IndicatorSerializer(PredicateSerializer):
    route = "indicator"


class ExclusionSerializer(PredicateSerializer):
    route = "exclusion"


# --------------------------------------------------------------------------------------------
# Catalog-wide ATT&CK and events (documentation of the dicts in coverage.py)
# --------------------------------------------------------------------------------------------


class TacticCountSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    shortname = serializers.CharField()
    name = serializers.CharField()
    url = serializers.URLField(allow_null=True)
    known = serializers.BooleanField(help_text="In the ATT&CK v19 matrix")
    rules = serializers.IntegerField(help_text="Rules tagged with this tactic")


class TechniqueCountSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    parent_id = serializers.CharField(allow_null=True)
    tactics = serializers.ListField(child=serializers.CharField())
    url = serializers.URLField(allow_null=True)
    known = serializers.BooleanField(help_text="A current ATT&CK v19 technique")
    rules = serializers.IntegerField(help_text="Rules tagged with exactly this technique")


class AttackSummarySerializer(serializers.Serializer):
    attack_version = serializers.CharField()
    tactics = TacticCountSerializer(many=True)
    techniques = TechniqueCountSerializer(many=True)


class EventSourceCountSerializer(EventSourceSerializer):
    rules = serializers.IntegerField()


class EventSummarySerializer(serializers.Serializer):
    sources = EventSourceCountSerializer(many=True)
    unmapped_rules = serializers.IntegerField(help_text="Rules whose logsource has no events")


class LayerVersionsSerializer(serializers.Serializer):
    attack = serializers.CharField()
    navigator = serializers.CharField()
    layer = serializers.CharField()


class LayerLinkSerializer(serializers.Serializer):
    label = serializers.CharField()
    url = serializers.URLField()


class LayerTechniqueSerializer(serializers.Serializer):
    techniqueID = serializers.CharField()  # Navigator's camelCase names
    tactic = serializers.CharField(required=False)
    score = serializers.IntegerField()
    comment = serializers.CharField()
    enabled = serializers.BooleanField()
    links = LayerLinkSerializer(many=True)
    showSubtechniques = serializers.BooleanField()


class LayerGradientSerializer(serializers.Serializer):
    colors = serializers.ListField(child=serializers.CharField())
    minValue = serializers.IntegerField()
    maxValue = serializers.IntegerField()


class LayerLegendItemSerializer(serializers.Serializer):
    label = serializers.CharField()
    color = serializers.CharField()


class LayerMetadataSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField()


class NavigatorLayerSerializer(serializers.Serializer):
    """An ATT&CK Navigator layer, format 4.5."""

    name = serializers.CharField()
    versions = LayerVersionsSerializer()
    domain = serializers.CharField()
    description = serializers.CharField()
    sorting = serializers.IntegerField()
    layout = serializers.DictField()
    hideDisabled = serializers.BooleanField()
    techniques = LayerTechniqueSerializer(many=True)
    gradient = LayerGradientSerializer()
    legendItems = LayerLegendItemSerializer(many=True)
    showTacticRowBackground = serializers.BooleanField()
    tacticRowBackground = serializers.CharField()
    selectTechniquesAcrossTactics = serializers.BooleanField()
    selectSubtechniquesWithParent = serializers.BooleanField()
    selectVisibleTechniques = serializers.BooleanField()
    metadata = LayerMetadataSerializer(many=True)
    links = LayerLinkSerializer(many=True)


# --------------------------------------------------------------------------------------------
# Imports (staff)
# --------------------------------------------------------------------------------------------


class ImportErrorSerializer(serializers.Serializer):
    path = serializers.CharField()
    error = serializers.CharField()
    code = serializers.CharField()


class ImportRunSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:import-detail")
    errors = ImportErrorSerializer(many=True)
    sources = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = ImportRun
        fields = [
            "id", "url", "started_at", "finished_at", "trigger", "sources", "status",
            "created", "updated", "unchanged", "failed", "pruned", "seconds", "errors",
            "message",
        ]  # fmt: skip
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    """A rule file or archive to import (``.yml``/``.yaml``, ``.zip``, ``.tar.gz``/``.tgz``)."""

    file = serializers.FileField()
    prune = serializers.BooleanField(
        default=False, help_text="Delete catalog rules that are not in this upload"
    )

    def validate_file(self, upload: Any) -> Any:
        if not is_rule_upload(upload.name):
            name = upload_name(upload.name) or "a nameless file"
            raise serializers.ValidationError(
                f"Upload a {', '.join(UPLOAD_SUFFIXES)} file, not {name}."
            )
        if upload.size > settings.RULE_ARCHIVE_MAX_BYTES:
            raise serializers.ValidationError(
                f"File is {upload.size:,} bytes (limit {settings.RULE_ARCHIVE_MAX_BYTES:,})."
            )
        return upload


class ImportReportSerializer(serializers.Serializer):
    run = serializers.URLField(allow_null=True, help_text="The ImportRun recorded for it")
    run_id = serializers.IntegerField(allow_null=True)
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    pruned = serializers.IntegerField()
    seconds = serializers.FloatField()
    summary = serializers.CharField()
    errors = ImportErrorSerializer(many=True)


def _evidence(rule: Rule) -> dict[str, Any]:
    """The detail's ``related``, ``similar``, ``findings`` and ``regression`` (one query)."""
    evidence = load_evidence(rule.pk)
    return {
        "related": evidence.links,
        "similar": evidence.similar,
        "findings": evidence.findings,
        "regression": evidence.regression_api(),
    }
