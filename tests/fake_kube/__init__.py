"""Fidelity tests of the fake Kubernetes API server, through unmodified kubernetes_asyncio and kubernetes."""
