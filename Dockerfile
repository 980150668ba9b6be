FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY affise_proj affise_proj
COPY offers offers
COPY partners partners
COPY conversions conversions
COPY manage.py ./
RUN pip install --no-cache-dir . && python manage.py collectstatic --noinput -v0
EXPOSE 8000
CMD ["gunicorn", "affise_proj.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--limit-request-line", "16384"]
