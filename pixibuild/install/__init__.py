"""Streaming conda/wheel installer: archive readers (sources) and prefix linking (destinations)."""

from pixibuild.install.environment import (InstallReport, dependency_order, install_environment,
    install_package)
from pixibuild.install.noarch import environment_python_version

__all__ = ["InstallReport", "dependency_order", "environment_python_version", "install_environment",
           "install_package"]
