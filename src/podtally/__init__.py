"""podtally: which pod answered, and is the load balancer spreading traffic evenly?"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
