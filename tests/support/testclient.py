"""Starlette's TestClient, imported once: Starlette 1.x prefers httpx2 for it and warns about httpx,
which (a dev dependency) works the same."""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]
