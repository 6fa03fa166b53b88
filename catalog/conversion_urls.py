"""Conversion URLs (namespace ``conversion``), included at the site root.

Include them before ``api/`` so ``/api/rules/<id>/convert/`` is not taken by the API router::

    path("", include("catalog.conversion_urls")),
"""

from django.urls import path

from catalog import conversion_views

app_name = "conversion"

urlpatterns = [
    path("rules/<str:rule_id>/convert/", conversion_views.rule_convert, name="rule-convert"),
    path("convert/report/", conversion_views.conversion_report, name="report"),
    path(
        "api/rules/<str:rule_id>/convert/",
        conversion_views.api_rule_convert,
        name="api-rule-convert",
    ),
    path("api/convert/targets/", conversion_views.api_targets, name="api-targets"),
    path("api/convert/export/", conversion_views.api_export, name="api-export"),
]
