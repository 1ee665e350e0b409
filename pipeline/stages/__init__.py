"""Thin entry points that DVC calls (``python -m pipeline.stages.<name>``): read params, call
the library, write outputs atomically."""
