from rest_framework.pagination import LimitOffsetPagination


class CatalogPagination(LimitOffsetPagination):
    """One pagination setting for the whole API; ``limit`` is capped."""

    default_limit = 50
    max_limit = 1000
