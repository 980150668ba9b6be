import os

from django.core.wsgi import get_wsgi_application

from affise_proj.chunked import ChunkedBody

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affise_proj.settings")

application = ChunkedBody(get_wsgi_application())
