"""fleetd's version, in a module of its own: fleetd/__init__.py re-exports it as
`fleetd.__version__`, and modules that fleetd/__init__.py imports (plugin discovery
names the core plugin's version) read it from here without importing the package's
public API back (a cycle)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
