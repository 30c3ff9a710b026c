"""The identity service: one replica that says who it is, with honest readiness and a drain."""

from podtally.service.config import ServeConfig
from podtally.service.server import serve

__all__ = ["ServeConfig", "serve"]
