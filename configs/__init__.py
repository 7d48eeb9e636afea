"""Training configs, one file per supervision regime (DESIGN.md §5); the builder: common.py."""
