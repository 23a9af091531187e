"""The `make bench` tooling (see bench/run.py)."""
