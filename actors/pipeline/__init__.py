"""The data pipeline: taps that fan frames and readings out, the shared-memory ring buffer,
the HDF5/NeXus run writer and the recorder that drives runs."""
