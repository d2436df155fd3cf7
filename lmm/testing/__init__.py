"""Test doubles (L{lmm.testing.doubles}) and test mixins (L{lmm.testing.mixins})
only: what the lab and the benchmarks run is in L{lmm.lab}."""
