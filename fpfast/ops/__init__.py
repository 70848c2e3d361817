"""Ops with one name and one implementation per backend (see fpfast.backends)."""
from .residual import residual

__all__ = ["residual"]
