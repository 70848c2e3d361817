"""The jobs the CLI runs, as plain functions, one module per job.

* :mod:`.options` - :class:`StreamOptions` (how images flow), device and backend resolution.
* :mod:`.mappers` - the pipeline mappers: fingerprint, learned embedding, attribute (columns,
  left on the batch's device).
* :mod:`.collect` - fingerprint sources into memory (enroll, eval, train).
* :mod:`.enroll` - enroll models into a gallery and finish (refit, recalibrate, save).
* :mod:`.train` - train a learned embedding and re-enroll a gallery with it.
* :mod:`.schema` - the columns of the ``attribute`` output.
* :mod:`.specs` - a ``--spec`` value (preset, JSON, or ``KIND:PATH`` of a registered projector).

The CLI only parses options and prints; every step here is usable from Python on its own. The
runner they all feed is :mod:`fpfast.pipeline`.
"""
