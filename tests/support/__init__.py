"""The test kit shared by every test area: polling, optional imports, ready-made specs and pods.

Support code only: no ``test_*.py`` here, so ``scripts/test`` runs no area for this directory.
Fixtures stay in the ``conftest.py`` files; plain helpers that more than one module imports live here.
"""
