"""The project documents itself: every link in its docs points at a file of the repository."""

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR).resolve()
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_link_in_the_docs_is_a_file_of_the_repository():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        for target in LINK.findall(doc.read_text()):
            where = f"{doc.relative_to(ROOT)} links {target}"
            assert not re.match(r"^[a-z][a-z0-9+.-]*:", target), f"{where}: outside the repository"
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            assert path.is_relative_to(ROOT), f"{where}: outside the repository"
            assert path.exists(), f"{where}: no such file"


def test_the_contract_is_in_the_repository():
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    assert "## Outcomes (exact strings)" in design
    assert "](docs/DESIGN.md)" in (ROOT / "README.md").read_text()
