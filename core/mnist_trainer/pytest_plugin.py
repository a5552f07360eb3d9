"""Pytest fixtures for plugin authors, registered through the ``pytest11`` entry point."""

import pytest

from . import testing


@pytest.fixture
def mnist_manager():
    """Factory: ``mnist_manager(plugin, ...)`` -> a fresh plugin manager with the core defaults."""
    return testing.plugin_manager


@pytest.fixture
def mnist_settings():
    """Factory: ``mnist_settings(OptionsInstance, epochs=2, ...)`` -> small CPU `Settings`."""
    return testing.settings


@pytest.fixture
def mnist_data():
    """A tiny deterministic synthetic dataset (600 training images) on the CPU, made afresh for each test."""
    return testing.tiny_data()
