from conversions.models import Conversion

from ..conftest import wait_settled


def test_postback_becomes_conversion_through_the_worker(worker, click, send):
    pid = send(clickid=click.clickid)
    row = wait_settled(pid)
    assert row.state == "accepted", row.error
    assert Conversion.objects.get().status == "approved"
