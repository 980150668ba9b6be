import pytest

from ..api.conftest import admin_api, bare_staff_api, manager_api, superuser, support_api  # noqa: F401
from ..conftest import wait_settled


@pytest.fixture
def process(worker, send):
    """Send a postback through the endpoint and wait until the worker settles it."""

    def process_(**params):
        return wait_settled(send(**params))

    return process_
