from django.core.management.base import BaseCommand

from conversions.intake import spool


class Command(BaseCommand):
    help = (
        "Import the local postback spool now (the sweeper does so every few seconds). "
        "With --retry-set-aside, entries the database refused are tried again first."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--retry-set-aside",
            action="store_true",
            help="Import the set-aside entries again (after fixing what made the database refuse them).",
        )

    def handle(self, *args, retry_set_aside: bool, **options):
        imported = spool.retry_set_aside() if retry_set_aside else spool.import_spool()
        self.stdout.write(
            f"{imported} imported; {spool.pending()} still spooled, "
            f"{spool.set_aside()} set aside ({spool.SET_ASIDE_NAME} in the spool folder)."
        )
