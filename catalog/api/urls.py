"""API URLs (namespace ``api``); filled in by the API issue."""

app_name = "api"
urlpatterns: list = []
