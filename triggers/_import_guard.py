"""Name the file that shadows kpo-finalizer's packages when ``import triggers.operator`` fails.

``triggers``, ``finalizer`` and ``api_client`` are top-level import names, and Airflow puts user
folders on ``sys.path`` (Airflow 3.3.2):

- ``import airflow`` appends ``$AIRFLOW_HOME/config`` and the plugins folder
  (``settings.prepare_syspath_for_config_and_plugins``, in every Airflow process);
- ``BundleDagBag`` appends the DAG bundle's folder (the dag-processor's parse, a worker's task
  runner, the ``airflow dags`` commands);
- a zipped DAG file goes *first* on ``sys.path`` while its modules are imported, each under its
  own file name, after any module of that name was dropped from ``sys.modules``
  (``dag_processing/importers/python_importer.py``);
- and ``PYTHONPATH``, the working folder of ``python -m airflow …`` and a script's own folder
  (``python dags/my_dag.py`` for ``dag.test()``) come before site-packages anyway: the only ways
  in for the triggerer, which adds no folder of its own.

A user's ``triggers.py`` found first becomes ``sys.modules["triggers"]``, and every later
``import triggers.operator`` fails inside Python's import system with "No module named
'triggers.operator'; 'triggers' is not a package" — before any finder is asked, and naming
neither file. So the wheel ships ``kpo_finalizer_import_guard.pth`` (site-packages runs its one
line at interpreter start), which imports this file as the top-level module
``_kpo_finalizer_import_guard`` and puts an ``ImportGuard`` first on ``sys.meta_path``:

- any other name: ``None`` at once (one string split per import);
- one of our three names: the spec the other finders would return; ours passes untouched;
- a shadow is imported as usual (the user's own module keeps working); a plain module only gets
  an empty ``__path__``, so that Python asks the finders for its submodules instead of failing
  on its own; the guard then answers ``ModuleNotFoundError`` naming the shadowing file and ours.

A wheel puts our packages next to this module, so "ours" is a path; an editable install
(``pip install -e``) gets a copy of this module in site-packages and leaves our packages in the
checkout, so there any package of our names is taken for ours and only a plain module for a
shadow. ``KPO_FINALIZER_IMPORT_GUARD=0`` turns the guard off.

It runs in every interpreter of the environment, so at run time it imports only ``os`` and ``sys``
(``importlib.abc`` alone would pull in ``pathlib``, ``re`` and ``typing``: finders and loaders are
duck-typed), and ``install`` never raises.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every interpreter start
if TYPE_CHECKING:  # for mypy only
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["NAMES", "SWITCH", "ImportGuard", "install", "shadow_message"]

#: The top-level import names kpo-finalizer ships.
NAMES = frozenset({"api_client", "finalizer", "triggers"})


#: Set to ``0`` / ``off`` / ``false`` to leave Python's own message (the ``.pth`` line then does nothing).
SWITCH = "KPO_FINALIZER_IMPORT_GUARD"


def shadow_message(fullname: str, shadow: str, ours: str | None) -> str:
    """Why ``fullname`` cannot be imported: which file took the package's name, and where ours is."""
    top = fullname.partition(".")[0]
    where = f" ({ours})" if ours else ""
    return (
        f"No module named {fullname!r}: {top!r} was imported from {shadow}, which shadows "
        f"kpo-finalizer's {top!r} package{where}. Rename that file or folder: Airflow puts the "
        "DAGs and plugins folders on sys.path (kpo-finalizer README, 'Package names')."
    )


class ImportGuard:
    """First on ``sys.meta_path``: turns a shadowed package's failing submodule import into a clear error."""

    #: Marks a guard whatever copy of this module it comes from (``install`` puts one only).
    kpo_finalizer_import_guard = True

    def __init__(self, root: str) -> None:
        #: Where the wheel put our packages: next to this module (an editable install leaves only
        #: this module there, a copy: then any package of our names counts as ours).
        self.root = os.path.realpath(root)
        #: Top-level name -> the module that shadows ours (checked against ``sys.modules`` on use).
        self._shadows: dict[str, ModuleType] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        top, dot, _ = fullname.partition(".")
        if top not in NAMES:
            return None
        if dot:
            shadow = self._shadows.get(top)
            if shadow is None or sys.modules.get(top) is not shadow:
                return None
            spec = self._find_elsewhere(fullname, path, target)  # a shadowing package's own submodule
            if spec is not None:
                return spec
            where = getattr(shadow, "__file__", None) or repr(shadow)
            raise ModuleNotFoundError(shadow_message(fullname, where, self._ours(top)), name=fullname)
        spec = self._find_elsewhere(fullname, path, target)
        if spec is None or self._is_ours(spec, top) or spec.loader is None:
            return spec
        if not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RecordingLoader(spec.loader, self, top)  # type: ignore[assignment]  # duck-typed
        return spec

    def shadowed(self, top: str, module: ModuleType) -> None:
        """``module`` was imported as ``top`` and is not ours: remember it; give a plain module a path."""
        self._shadows[top] = module
        if not hasattr(module, "__path__"):
            module.__path__ = []

    def _ours(self, top: str) -> str | None:
        """Our package's folder, when it sits next to this module (a wheel install)."""
        ours = os.path.join(self.root, top)
        return ours if os.path.isdir(ours) else None

    def _is_ours(self, spec: ModuleSpec, top: str) -> bool:
        locations = spec.submodule_search_locations
        if locations is None:
            return False  # a plain module is never our package
        ours = self._ours(top)
        return ours is None or any(os.path.realpath(p) == ours for p in locations)

    def _find_elsewhere(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None
    ) -> ModuleSpec | None:
        """What the rest of ``sys.meta_path`` finds (every other guard skipped)."""
        for finder in list(sys.meta_path):
            if getattr(finder, "kpo_finalizer_import_guard", False):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                return spec
        return None


class _RecordingLoader:
    """The shadow's own loader, which then tells the guard; the module ends with its own loader."""

    def __init__(self, loader: Loader, guard: ImportGuard, top: str) -> None:
        self._loader = loader
        self._guard = guard
        self._top = top

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        if spec is not None:
            spec.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        self._guard.shadowed(self._top, module)


def install(root: str | None = None) -> bool:
    """Put an ``ImportGuard`` first on ``sys.meta_path`` once; ``root`` defaults to this file's folder.

    Run by the ``.pth`` line at interpreter start, so it never raises: a guard that cannot be
    installed leaves Python's own error message, nothing worse. True when a guard is in place;
    ``KPO_FINALIZER_IMPORT_GUARD=0`` in the environment turns it off.
    """
    try:
        if os.environ.get(SWITCH, "").strip().lower() in ("0", "off", "false", "no"):
            return False
        if not any(getattr(finder, "kpo_finalizer_import_guard", False) for finder in sys.meta_path):
            here = os.path.dirname(os.path.abspath(__file__))
            sys.meta_path.insert(0, ImportGuard(root if root is not None else here))
        return True
    except Exception:
        return False
