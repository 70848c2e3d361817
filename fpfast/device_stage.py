"""The GPU decode stage of the runner: JPEGs decoded in batches by nvJPEG, straight into CUDA batches.

``run(..., decode_device="cuda")`` uses it in place of :func:`fpfast.pipeline.cpu_decode_stage`
(the same contract: every input once, as a member of a :class:`~fpfast.pipeline.Batch` or as a
:class:`~fpfast.pipeline.Failed`, never holding back an earlier shard):

* the decode workers (or this process with ``workers=0``) read each input and look at its header
  (:func:`fpfast.io.device_decode.route_item`): a JPEG nvJPEG takes comes back as its bytes, after
  the same size checks as on the CPU; anything else is decoded on the CPU as in the CPU stage;
* JPEG bytes wait in groups of one decoded shape (after the spec's crop) and are decoded a whole
  group at a time on the device (:class:`fpfast.io.device_decode.DeviceDecoder`); the batch is a
  uint8 [B, H, W, 3] view of the decoder's [B, 3, H, W] CUDA tensor, or the spec's resize of it;
* CPU-decoded images form CPU batches (:class:`fpfast.pipeline.Batcher`), which the mapper moves.

A file nvJPEG refuses although its header looked right is decoded by the CPU decoder, which gives
the image or the same error row as the CPU stream.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator, Union

import torch

from .io.decode import DEFAULT_MAX_PIXELS
from .io.device_decode import DeviceDecoder, route_item
from .pipeline import Batch, Batcher, Failed, decode_stream
from .prepare import apply_geometry
from .spec import FingerprintSpec


class _JpegGroups:
    """JPEG bytes waiting for the device, grouped by decoded shape."""

    def __init__(self, decoder: DeviceDecoder, batch_size: int, spec: FingerprintSpec):
        self.decoder, self.batch_size, self.spec = decoder, batch_size, spec
        self.groups: dict[tuple, list] = {}
        self.waiting = 0

    def add(self, index: int, key: str, shape: tuple, data: bytes, side: int = 0) -> list:
        """Queue one JPEG (``shape``: after the crop; ``side``: its shorter side before it)."""
        self.groups.setdefault(shape, []).append((index, key, data, side))
        self.waiting += 1
        out = []
        if len(self.groups[shape]) >= self.batch_size:
            out += self._take(shape)
        while self.waiting > 4 * self.batch_size:
            out += self._take(max(self.groups, key=lambda k: len(self.groups[k])))
        return out

    def _take(self, shape) -> list:
        members = self.groups.pop(shape)
        self.waiting -= len(members)
        out = self.decoder.decode_routed([m[2] for m in members])
        failed = [Failed(members[j][0], members[j][1], msg) for j, msg in sorted(out.errors.items())]
        by_shape: dict[tuple, list] = {}
        for j, img in sorted(out.images.items()):  # a CPU fallback may give another dtype
            by_shape.setdefault((tuple(img.shape), img.dtype), []).append(j)
        batches = []
        for js in by_shape.values():
            x = torch.stack([out.images[j] for j in js])             # [B, 3, H, W] on the device
            x = apply_geometry(x, self.spec) if self.spec.geometry == "resize" else x
            batches.append(Batch([members[j][0] for j in js], [members[j][1] for j in js],
                                 [out.notes.get(j, "") for j in js], x.permute(0, 2, 3, 1),
                                 [members[j][3] for j in js]))
        return failed + batches

    def flush(self) -> list:
        out = []
        for shape in list(self.groups):
            out += self._take(shape)
        return out


def device_decode_stage(spec: FingerprintSpec, batch_size: int = 64, workers: int = 0, chunksize: int = 16,
                        max_pixels: int = DEFAULT_MAX_PIXELS, mp_context=None, device: str = "cuda"):
    """A decode stage (see :mod:`fpfast.pipeline`) that decodes JPEGs on ``device`` with nvJPEG."""
    decoder = DeviceDecoder(spec, device, max_pixels)
    jpegs = _JpegGroups(decoder, batch_size, spec)
    batcher = Batcher(batch_size, spec)

    def flush(timings: dict) -> list:
        t0 = time.perf_counter()
        ready = batcher.flush() + jpegs.flush()
        timings["batch"] += time.perf_counter() - t0
        return ready

    def stage(indexed: Iterator[tuple[int, str, object]], shard_of: Callable[[int], int],
              timings: dict) -> Iterator[Union[Batch, Failed]]:
        current = None
        for i, d in decode_stream(indexed, spec, workers, chunksize, max_pixels, mp_context, timings,
                                  decode_fn=route_item):
            s = shard_of(i)
            if current is not None and s != current:   # every input of the earlier shards is read
                yield from flush(timings)
            current = s
            if d.error:
                yield Failed(i, d.key, d.error, d.note)
                continue
            t0 = time.perf_counter()
            if d.jpeg is not None:                     # (decoded shape, JPEG bytes) for the device
                ready = jpegs.add(i, d.key, *d.jpeg, d.side)
                timings["decode"] += time.perf_counter() - t0   # mostly nvJPEG, when a group is full
            else:
                ready = batcher.add(i, d.key, d.note, d.image, d.side)
                timings["batch"] += time.perf_counter() - t0
            yield from ready
        yield from flush(timings)
    return stage
