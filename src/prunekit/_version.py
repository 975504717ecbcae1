"""The package version, in a leaf module any subpackage can import without going through the root."""

__version__ = "0.1.0"
