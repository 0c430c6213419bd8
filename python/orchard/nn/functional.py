"""Functional forms of the layers, with PyTorch's names and semantics."""
from .._core import scaled_dot_product_attention

__all__ = ["scaled_dot_product_attention"]
