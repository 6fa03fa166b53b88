"""ASGI entry point: only for comparing servers (``bench/bench_load.py`` runs uvicorn on it).

The site is synchronous Django; the shipped server runs ``catalog.wsgi`` (see the README's
"Production" section for why).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
application = get_asgi_application()

from catalog import offload  # noqa: E402 - needs the settings above

offload.start()  # heavy sandbox evaluations in helper processes when HEAVY_OFFLOAD is on
