"""Tests of the Docker image and its pod/compose setup (built with podman from a local base)."""
