"""The application: the ``amplink`` command (:mod:`amplink.app.cli`), its demo, the live
view of ``amplink up``, progress and tables for the terminal, and the benchmarks."""
