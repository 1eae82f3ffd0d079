"""yacr: a runc-compatible OCI container runtime in Python, for Linux containers and Wasm."""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
