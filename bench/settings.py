"""Bench-only settings: the product's settings plus a no-op view to compare against."""

from affise_proj.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
