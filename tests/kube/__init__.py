"""Tests of finalizer.kube against the fake API server over real sockets."""
