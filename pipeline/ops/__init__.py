"""Operator tools behind ``pipeline replay`` and ``pipeline dlq``: each module one job, pure parts apart."""
