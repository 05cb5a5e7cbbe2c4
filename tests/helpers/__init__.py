"""Helpers shared by the tests, one module per concern; test modules import from here, never
from each other or from conftest."""
