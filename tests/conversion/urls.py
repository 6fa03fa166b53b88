"""Test URLconf: the site's root URLs with the conversion URLs in front, as the integration
note asks (``path("", include("catalog.conversion_urls"))`` before ``api/``). Once the root
URLconf includes them itself, this adds nothing."""

from django.urls import include, path

from catalog.urls import urlpatterns as site_urlpatterns

_wired = any(getattr(p, "namespace", None) == "conversion" for p in site_urlpatterns)

urlpatterns = (
    list(site_urlpatterns)
    if _wired
    else [path("", include("catalog.conversion_urls")), *site_urlpatterns]
)
