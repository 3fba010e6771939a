"""Streaming conda/wheel installer: archive readers (sources) and prefix linking (destinations).

Import from the modules (`pixibuild.install.environment`, `.activation`, ...): this face imports
nothing, so a command that only needs the activation shells does not load the installer (~80 ms)."""
