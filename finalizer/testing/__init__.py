"""Test kit shipped with the package: a wire-faithful fake Kubernetes API server and helpers."""
