"""Date and time formats of the panel (FORMAT_MODULE_PATH): seconds and the time zone always."""
