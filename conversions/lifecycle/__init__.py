"""Data lifecycle: time partitions, retention and purge (README "Data lifecycle")."""
