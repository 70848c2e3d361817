"""Shipped model files: ``universal.safetensors`` + ``universal.json`` (see :mod:`fpfast.embed.universal`)."""
