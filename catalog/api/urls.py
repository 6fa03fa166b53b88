"""API URLs (namespace ``api``), every JSON endpoint of the site: a router for the viewsets,
plain paths for files (no trailing slash: ``export.csv``, ``layer.json``), the sandbox,
conversion, the schema and Swagger UI (vendored assets from drf-spectacular-sidecar; no
Redoc, whose page loads web fonts from a CDN)."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from catalog.api import (
    conversion,
    imports,
    jobs,
    quality,
    releases,
    sandbox,
    telemetry,
    views,
    workbench,
)
from catalog.api.errors import api_not_found

app_name = "api"

router = SimpleRouter()
router.register("rules", views.RuleViewSet, basename="rule")
router.register("indicators", views.IndicatorViewSet, basename="indicator")
router.register("exclusions", views.ExclusionViewSet, basename="exclusion")
router.register("imports", imports.ImportRunViewSet, basename="import")

urlpatterns = [
    path("", views.APIRootView.as_view(), name="root"),
    # Before the router: its rule-detail pattern would otherwise take "export.csv/".
    path("rules/export.ndjson", views.RuleNdjsonExportView.as_view(), name="rule-export-ndjson"),
    path("rules/export.csv", views.RuleCsvExportView.as_view(), name="rule-export-csv"),
    path("indicators/<int:pk>/rules/", views.IndicatorRulesView.as_view(), name="indicator-rules"),
    path("exclusions/<int:pk>/rules/", views.ExclusionRulesView.as_view(), name="exclusion-rules"),
    path("attack/", views.AttackView.as_view(), name="attack"),
    path("attack/layer.json", views.NavigatorLayerView.as_view(), name="attack-layer"),
    path("events/", views.EventSourceView.as_view(), name="events"),
    path("sandbox/", sandbox.SandboxAPIView.as_view(), name="sandbox"),
    path("sandbox/jobs/", jobs.SandboxJobView.as_view(), name="sandbox-job"),
    path("workbench/", workbench.WorkbenchAPIView.as_view(), name="workbench"),
    path("jobs/<str:job_id>/", jobs.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<str:job_id>/cancel/", jobs.JobCancelView.as_view(), name="job-cancel"),
    path("rules/<str:rule_id>/convert/", conversion.RuleConvertView.as_view(), name="rule-convert"),
    path("convert/targets/", conversion.TargetsView.as_view(), name="convert-targets"),
    path("convert/export/", conversion.ConversionExportView.as_view(), name="convert-export"),
    path("releases/", releases.ReleaseListView.as_view(), name="release-list"),
    path(
        "releases/<str:name>/changes/",
        releases.ReleaseChangesView.as_view(),
        name="release-changes",
    ),
    path(
        "rules/<str:rule_id>/revisions/",
        releases.RuleRevisionsView.as_view(),
        name="rule-revisions",
    ),
    path("rules/<str:rule_id>/diff/", releases.RuleDiffView.as_view(), name="rule-diff"),
    path("rules/<str:rule_id>/related/", quality.RuleRelatedView.as_view(), name="rule-related"),
    path("coverage/", telemetry.CoverageAPIView.as_view(), name="coverage"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", views.SwaggerDocsView.as_view(), name="docs"),
    *router.urls,
    # Last: any other path under /api/ ending in "/" is a JSON 404. Paths without the slash
    # are left unresolved so that APPEND_SLASH can still redirect /api/rules to /api/rules/.
    # [\s\S], not ".": a path may hold an encoded newline (%0A). (An inline (?s) flag would
    # break reverse() for every URL.)
    re_path(r"^[\s\S]*/$", api_not_found),
]
