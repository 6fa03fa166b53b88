"""Page URLs (namespace ``catalog``), grouped by area like ``catalog/views/``."""

from django.urls import URLPattern, include, path

from catalog import views
from catalog.views import correlations, coverage, quality, releases

app_name = "catalog"

rule_urls = [
    path("", views.rule_list, name="rule-list"),
    path("<str:rule_id>/", views.rule_detail, name="rule-detail"),
    path("<str:rule_id>.yml", views.rule_download, name="rule-download"),
    path("<str:rule_id>/revisions/<int:number>/", releases.rule_revision, name="rule-revision"),
]
release_urls = [
    path("", releases.release_list, name="release-list"),
    path("feed.atom", releases.ReleaseFeed(), name="release-feed"),
    path("feed/<str:source>.atom", releases.ReleaseFeed(), name="release-source-feed"),
    path("<str:name>/", releases.release_detail, name="release-detail"),
]
attack_urls = [
    path("", views.attack_matrix, name="attack-matrix"),
    path("tactic/<str:shortname>/", views.tactic_detail, name="tactic-detail"),
    path("technique/<str:attack_id>/", views.technique_detail, name="technique-detail"),
]
event_urls = [
    path("", views.event_list, name="event-list"),
    path("<slug:slug>/", views.event_detail, name="event-detail"),
]


def predicate_urls(kind: str) -> list[URLPattern]:
    """``indicators/`` and ``indicators/<pk>/`` (likewise for exclusions)."""
    return [
        path("", getattr(views, f"{kind}_list"), name=f"{kind}-list"),
        path("<int:pk>/", getattr(views, f"{kind}_detail"), name=f"{kind}-detail"),
    ]


correlation_urls = [
    path("", correlations.correlation_list, name="correlation-list"),
    path("filters/<str:filter_id>/", correlations.filter_detail, name="filter-detail"),
    path("<str:correlation_id>/", correlations.correlation_detail, name="correlation-detail"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("correlations/", include(correlation_urls)),
    path("rules/", include(rule_urls)),
    path("releases/", include(release_urls)),
    path("attack/", include(attack_urls)),
    path("events/", include(event_urls)),
    path("indicators/", include(predicate_urls("indicator"))),
    path("exclusions/", include(predicate_urls("exclusion"))),
    path("quality/", quality.quality, name="quality"),
    path("quality/duplicates/", quality.duplicates, name="quality-duplicates"),
    path("coverage/", coverage.coverage_page, name="coverage"),
    path("coverage/layer.json", coverage.coverage_layer, name="coverage-layer"),
    path("coverage/coverage.csv", coverage.coverage_csv, name="coverage-csv"),
    path("coverage/profile.yml", coverage.coverage_profile_file, name="coverage-profile"),
    path("coverage/use/", coverage.coverage_use, name="coverage-use"),
]
