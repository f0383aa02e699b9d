"""blurface's version: its own module, so any module can read it without importing the package's lazy front."""

__version__ = "0.1.0"
