"""An example of a third party's lmm backends (see README.md beside it)."""
