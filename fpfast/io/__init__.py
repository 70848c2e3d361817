"""Input and output of the stream: readers (:mod:`.sources`), the decoder (:mod:`.decode`) and
sharded, resumable writers (:mod:`.writers`). The stream that joins them is
:mod:`fpfast.pipeline`.

For a CLI::

    from fpfast.io.sources import check_sources, iter_sources, SourceSpecError
    from fpfast.io.decode import decode_image, DecodeError, DEFAULT_MAX_PIXELS
    from fpfast.io.writers import open_writer, read_rows, OutputError
    from fpfast.pipeline import run, run_stream
    from fpfast.jobs.mappers import fingerprint_mapper
    from fpfast.errors import exit_code_for, EXIT_ROW_ERRORS
"""
