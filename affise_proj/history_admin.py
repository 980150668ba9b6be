"""The admin's view of the history (affise_proj/history.py): a table on each change page."""

import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from .history import history_of


class HistoryAdminMixin:
    """A read-only "change history" on the change page: who changed what, when and why."""

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "change_history"] if obj is not None else fields

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "change_history"]
        return [*fields, "change_history"] if obj is not None else fields

    @admin.display(description="change history")
    def change_history(self, obj) -> str:
        rows = history_of(obj)
        if not rows:
            return "No changes recorded."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            (
                (
                    row["at"][:19].replace("T", " "),
                    row["user"] or "-",
                    row["source"],
                    json.dumps(row["changes"], ensure_ascii=False, default=str),
                    row["comment"],
                )
                for row in reversed(rows)
            ),
        )
        return format_html(
            '<table class="change-history"><thead><tr><th>when</th><th>who</th>'
            "<th>source</th><th>changes</th><th>comment</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )
