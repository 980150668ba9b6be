import logging
import time

from django.core.management.base import BaseCommand
from django.db import connections

from conversions.intake import spool

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Import the local postback spool now (the sweeper does so every few seconds). "
        "With --retry-set-aside, entries the database refused are tried again first. "
        "With --every N, import every N seconds until stopped: the spool importer of a "
        "web host that runs no worker or beat (its spool is on its own disk)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--retry-set-aside",
            action="store_true",
            help="Import the set-aside entries again (after fixing what made the database refuse them).",
        )
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Import again every SECONDS seconds, until stopped (SIGTERM).",
        )

    def handle(self, *args, retry_set_aside: bool, every: float | None, **options):
        if every is not None and every <= 0:
            self.stderr.write("--every takes a number of seconds above 0.")
            raise SystemExit(2)
        imported = spool.retry_set_aside() if retry_set_aside else spool.import_spool()
        self.stdout.write(
            f"{imported} imported; {spool.pending()} still spooled, "
            f"{spool.set_aside()} set aside ({spool.SET_ASIDE_NAME} in the spool folder)."
        )
        while every is not None:
            time.sleep(every)
            try:
                if spool.pending() and (imported := spool.import_spool()):
                    log.warning("imported %d spooled postbacks", imported)
            except Exception:
                # The database may be away for longer than a round: try the next one.
                log.warning("spool import failed; trying again in %s s", every, exc_info=True)
            finally:
                # A connection per round: the database may restart in between.
                connections.close_all()
