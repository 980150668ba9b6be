FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY affise_proj affise_proj
COPY offers offers
COPY partners partners
COPY conversions conversions
COPY manage.py gunicorn.conf.py ./
RUN pip install --no-cache-dir . && python manage.py collectstatic --noinput -v0
# The web server's settings are gunicorn.conf.py's, read from the working directory.
ENV WEB_BIND=0.0.0.0:8000 WEB_CONCURRENCY=4
EXPOSE 8000
CMD ["gunicorn", "affise_proj.wsgi"]
