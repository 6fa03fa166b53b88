"""Conversion pages (namespace ``conversion``), included at the site root; their JSON
endpoints are in the API (:mod:`catalog.api.conversion`)."""

from django.urls import path

from catalog import conversion_views

app_name = "conversion"

urlpatterns = [
    path("rules/<str:rule_id>/convert/", conversion_views.rule_convert, name="rule-convert"),
    path("convert/report/", conversion_views.conversion_report, name="report"),
]
