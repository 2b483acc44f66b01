"""The HTTP service: ``create_app`` (FastAPI) and ``serve`` (uvicorn). Needs the optional
``serve`` dependencies (``pip install hydrarec[serve]``)."""

from hydrarec.serving.app import create_app

__all__ = ["create_app"]
