"""Page URLs (namespace ``catalog``)."""

from django.urls import path

from catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("rules/", views.rule_list, name="rule-list"),
    path("rules/<str:rule_id>/", views.rule_detail, name="rule-detail"),
    path("rules/<str:rule_id>.yml", views.rule_download, name="rule-download"),
    path("attack/", views.attack_matrix, name="attack-matrix"),
    path("attack/tactic/<str:shortname>/", views.tactic_detail, name="tactic-detail"),
    path("attack/technique/<str:attack_id>/", views.technique_detail, name="technique-detail"),
    path("events/", views.event_list, name="event-list"),
    path("events/<slug:slug>/", views.event_detail, name="event-detail"),
    path("indicators/", views.indicator_list, name="indicator-list"),
    path("indicators/<int:pk>/", views.indicator_detail, name="indicator-detail"),
    path("exclusions/", views.exclusion_list, name="exclusion-list"),
    path("exclusions/<int:pk>/", views.exclusion_detail, name="exclusion-detail"),
]
