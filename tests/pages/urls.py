"""The site's URLs plus the conversion URLs, for as long as ``catalog/urls.py`` does not
include them itself: the rule page includes the Convert section, which links to them."""

from django.urls import include, path

from catalog.urls import urlpatterns as site_urlpatterns

urlpatterns = [path("", include("catalog.conversion_urls")), *site_urlpatterns]
