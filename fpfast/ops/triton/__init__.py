"""Triton backend of the fused ops (GPU tensors; CPU tensors under TRITON_INTERPRET=1).

Nothing here imports triton: :mod:`fpfast.ops.triton.features` does, on first use, through the
dispatch in :mod:`fpfast.ops.features`.
"""
