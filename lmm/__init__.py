"""lmm: localized mobility management with Proxy Mobile IPv6, on Twisted."""

__version__ = "0.1.0"
