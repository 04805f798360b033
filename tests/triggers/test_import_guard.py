"""A user's ``triggers.py`` on Airflow's ``sys.path``: where Airflow puts it, and the error that names it.

Every case runs in a real interpreter of a fresh virtualenv holding the wheel built from this
checkout, installed by pip; Airflow and our dependencies come from this environment. With the
guard switched off (``KPO_FINALIZER_IMPORT_GUARD=0``) the cases show the facts: how the installed
Airflow extends ``sys.path`` and the bare ``'triggers' is not a package`` a shadow produces. With
the guard on (the wheel's ``.pth`` line, run at interpreter start) the same shadows name the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SHADOW = '"""A user\'s own module that happens to be called like ours."""\nVALUE = "user"\n'
BARE_ERROR = "No module named 'triggers.operator'; 'triggers' is not a package"
GUARD_ERROR = "shadows kpo-finalizer's 'triggers' package"
OFF = {"KPO_FINALIZER_IMPORT_GUARD": "0"}


@dataclass(frozen=True)
class Home:
    """An Airflow home whose DAGs and plugins folders both hold a ``triggers.py``, plus a zipped DAG."""

    path: Path

    @property
    def dags(self) -> Path:
        return self.path / "dags"

    @property
    def plugins(self) -> Path:
        return self.path / "plugins"

    @property
    def zipped(self) -> Path:
        return self.path / "zipped"

    def env(self, **extra: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", *OFF)}
        environ.update(
            AIRFLOW_HOME=str(self.path),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(self.plugins),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.path / 'airflow.db'}",
        )
        environ.update(extra)
        return environ


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = Home(tmp_path_factory.mktemp("airflow-home"))
    for folder in (home.dags, home.plugins, home.zipped):
        folder.mkdir()
    (home.dags / "triggers.py").write_text(SHADOW)
    (home.plugins / "triggers.py").write_text(SHADOW)
    (home.dags / "my_dag.py").write_text("from triggers.operator import FinalizingKubernetesPodOperator\n")
    # A zipped DAG bundle with a helper module at its root: Airflow imports each root module of a
    # zip under its own name ("airflow" and "dag" make it look like a DAG file to the parser).
    with zipfile.ZipFile(home.zipped / "bundle.zip", "w") as bundle:
        bundle.writestr("triggers.py", '"""Helpers for my airflow dag."""\nVALUE = 1\n')
        bundle.writestr(
            "zdag.py",
            '"""An airflow dag."""\nfrom triggers.operator import FinalizingKubernetesPodOperator\n',
        )
    return home


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with this checkout's wheel, installed by pip; Airflow from our environment."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp), str(ROOT)], check=True, timeout=300)
    (wheel,) = tmp.glob("kpo_finalizer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"kpo_finalizer_import_guard.pth", "_kpo_finalizer_import_guard.py"} <= names
        assert "triggers/_import_guard.py" not in names  # the guard must not import our packages
        pth = archive.read("kpo_finalizer_import_guard.pth").decode()
        assert pth.startswith("import _kpo_finalizer_import_guard;")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True
    )
    site = Path(_run(python, "import sysconfig; print(sysconfig.get_path('purelib'))", {}).stdout.strip())
    # Airflow, the provider and our dependencies come from this environment (a plain path line:
    # its own .pth files, among them an editable install of this checkout, are not run).
    (site / "zz_kpo_finalizer_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def _run(python: Path, code: str, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` (or ``python *args``) in the Airflow home: never in this checkout, which
    ``-c`` would put first on ``sys.path``."""
    return subprocess.run(
        [str(python), *(["-c", textwrap.dedent(code)] if code else []), *args],
        env=dict(env) if env else None,
        cwd=env.get("AIRFLOW_HOME", "/"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _shadowed(python: Path, home: Home, how: str, **extra: str) -> str:
    """The last line of the error a shadow first on ``sys.path`` produces."""
    if how == "PYTHONPATH":
        result = _run(python, "import triggers.operator", home.env(PYTHONPATH=str(home.dags), **extra))
    else:  # python dags/my_dag.py, as for dag.test(): the script's folder is sys.path[0]
        result = _run(python, "", home.env(**extra), str(home.dags / "my_dag.py"))
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stderr.strip().splitlines()[-1]


def _zip_error(python: Path, home: Home, **extra: str) -> str:
    """The import error Airflow's own DAG parser records for the zipped DAG."""
    code = """
        import os
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=os.environ["AIRFLOW_HOME"] + "/zipped")
        print(bag.import_errors[os.environ["AIRFLOW_HOME"] + "/zipped/bundle.zip/zdag.py"].splitlines()[-1])
    """
    result = _run(python, code, home.env(**extra))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _site(python: Path) -> str:
    return str(python.parents[1] / "lib")


# --- what Airflow does, and what a shadow looks like without the guard ------------------------


def test_airflow_appends_the_plugins_and_dag_folders(python: Path, home: Home) -> None:
    result = _run(
        python,
        """
        import json, os, sys
        site = max(i for i, p in enumerate(sys.path) if p.endswith("site-packages"))
        import airflow  # settings.initialize() -> prepare_syspath_for_config_and_plugins()
        after_import = list(sys.path)
        from airflow.dag_processing.dagbag import BundleDagBag
        dags = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
        BundleDagBag(dags, bundle_path=dags, bundle_name="dags-folder")
        import triggers.policy
        print(json.dumps({"site": site, "after_import": after_import, "after_bag": sys.path,
                          "triggers": triggers.__file__}))
        """,
        home.env(**OFF),
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["after_import"].index(str(home.plugins)) > seen["site"]  # appended, not prepended
    assert str(home.path / "config") in seen["after_import"][seen["site"] :]
    assert str(home.dags) not in seen["after_import"]
    assert seen["after_bag"][-1] == str(home.dags)  # the DAG bundle's folder: appended by BundleDagBag
    # Appended folders come after site-packages: our package wins over their triggers.py there.
    assert seen["triggers"].startswith(_site(python))


@pytest.mark.parametrize("how", ["PYTHONPATH", "script folder"])
def test_a_shadow_first_on_sys_path_fails_without_naming_the_file(python: Path, home: Home, how: str) -> None:
    last = _shadowed(python, home, how, **OFF)
    assert last == f"ModuleNotFoundError: {BARE_ERROR}"


def test_a_zipped_dag_puts_its_own_triggers_module_first(python: Path, home: Home) -> None:
    assert _zip_error(python, home, **OFF) == f"ModuleNotFoundError: {BARE_ERROR}"


# --- the same shadows with the wheel's import guard ---------------------------------------------


def test_without_a_shadow_the_guard_only_stands_first(python: Path, home: Home) -> None:
    result = _run(
        python,
        """
        import sys
        assert sys.meta_path[0].kpo_finalizer_import_guard, sys.meta_path
        import triggers.policy, finalizer.jobs, api_client.retry_after
        print(triggers.__file__, finalizer.__file__, api_client.__file__, sep="\\n")
        """,
        home.env(),
    )
    assert result.returncode == 0, result.stderr
    assert all(path.startswith(_site(python)) for path in result.stdout.split()), result.stdout


@pytest.mark.parametrize("how", ["PYTHONPATH", "script folder"])
def test_the_guard_names_the_shadowing_file(python: Path, home: Home, how: str) -> None:
    last = _shadowed(python, home, how)
    assert last.startswith("ModuleNotFoundError: No module named 'triggers.operator': "), last
    assert f"'triggers' was imported from {home.dags / 'triggers.py'}, which {GUARD_ERROR}" in last
    assert f"({_site(python)}" in last  # and where ours is


def test_the_guard_names_a_zipped_dags_module(python: Path, home: Home) -> None:
    last = _zip_error(python, home)
    assert f"'triggers' was imported from {home.zipped / 'bundle.zip' / 'triggers.py'}" in last
    assert GUARD_ERROR in last


def test_the_users_own_module_keeps_working(python: Path, home: Home) -> None:
    result = _run(
        python,
        """
        import triggers
        from triggers import VALUE
        assert VALUE == triggers.VALUE == "user"
        try:
            from triggers import FinalizingKubernetesPodOperator
        except ImportError as exc:
            print(exc)
        """,
        home.env(PYTHONPATH=str(home.dags)),
    )
    assert result.returncode == 0, result.stderr
    # Python's own message for a missing name already says which file it looked in.
    assert "cannot import name 'FinalizingKubernetesPodOperator' from 'triggers'" in result.stdout
    assert str(home.dags / "triggers.py") in result.stdout


def test_a_shadowed_finalizer_is_named_too(python: Path, home: Home, tmp_path: Path) -> None:
    (tmp_path / "finalizer.py").write_text(SHADOW)
    result = _run(python, "import triggers.policy", home.env(PYTHONPATH=str(tmp_path)))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"'finalizer' was imported from {tmp_path / 'finalizer.py'}" in last
    assert "shadows kpo-finalizer's 'finalizer' package" in last


def test_an_editable_install_takes_any_package_for_ours(python: Path, home: Home, tmp_path: Path) -> None:
    """The editable layout: the guard's copy has no packages beside it (``root`` is elsewhere)."""
    code = f"""
        import os, sys, _kpo_finalizer_import_guard as guard
        del os.environ["KPO_FINALIZER_IMPORT_GUARD"]  # off at start-up (no .pth guard), on from here
        assert guard.install(root={str(tmp_path)!r})
        import triggers.policy  # a package: ours, wherever it is
        sys.path.insert(0, {str(home.dags)!r})
        for name in [n for n in sys.modules if n == "triggers" or n.startswith("triggers.")]:
            del sys.modules[name]
        try:
            import triggers.operator
        except ModuleNotFoundError as exc:
            print(exc)
    """
    result = _run(python, code, home.env(**OFF))
    assert result.returncode == 0, result.stderr
    assert f"'triggers' was imported from {home.dags / 'triggers.py'}, which {GUARD_ERROR}." in result.stdout
