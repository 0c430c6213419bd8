"""Pretrained-compatible model definitions."""
from .gpt2 import GPT2
from .gpt2_config import GPT2Config
from .kv_cache import KVCache

__all__ = ["GPT2", "GPT2Config", "KVCache"]
