"""Admin form fields for what managers type by hand."""

from django import forms

from .validators import validate_ip_list

IP_LIST_HELP = (
    "One IP address or CIDR network per line, e.g. 203.0.113.7 or 198.51.100.0/24 "
    "(IPv6 too). Postbacks from any other address are rejected "
    "(Current IP-address is denied). Empty: any address."
)


class IPListField(forms.CharField):
    """A list of IPs/CIDRs edited as text, one per line (stored as the JSON list the API uses)."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 40, "placeholder": "203.0.113.7\n10.0.0.0/8"})

    def __init__(self, **kwargs):
        for name in ("encoder", "decoder", "max_length"):
            kwargs.pop(name, None)
        kwargs["help_text"] = IP_LIST_HELP
        kwargs["required"] = False
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value) -> list[str]:
        if isinstance(value, list):
            return value
        # Commas and spaces between addresses are read as line breaks too.
        text = (value or "").replace(",", "\n")
        return [item for line in text.splitlines() for item in line.split()]

    def validate(self, value) -> None:
        super().validate(value)
        validate_ip_list(value)

    def has_changed(self, initial, data) -> bool:
        return (initial or []) != self.to_python(data)
