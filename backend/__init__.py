"""headscope backend: the model engine (``backend.engine``) and the HTTP API (``backend.api``)."""

__version__ = "0.1.0"
