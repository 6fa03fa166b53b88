"""Page URLs (namespace ``catalog``)."""

from django.urls import path

from catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("rules/<str:rule_id>/", views.rule_detail, name="rule-detail"),
    path("attack/technique/<str:attack_id>/", views.technique_detail, name="technique-detail"),
    path("indicators/<int:pk>/", views.indicator_detail, name="indicator-detail"),
    path("exclusions/<int:pk>/", views.exclusion_detail, name="exclusion-detail"),
]
