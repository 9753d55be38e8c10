"""The `dsfd` command line."""
