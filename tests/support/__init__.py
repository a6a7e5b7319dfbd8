"""Test-only helpers: a service with slow and failing methods, and a socket manager that
behaves like systemd's ``Accept=no`` socket units (holds the socket, starts a handler when a
connection waits and none is running)."""
