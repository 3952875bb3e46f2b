"""Packaging: one version, the wheel's metadata and commands, the public API
and README's Python example."""

import ast
import configparser
import email
import json
import pathlib
import re
import subprocess
import sys
import tomllib
import zipfile

import numpy as np
import pytest

from conftest import REPO_ROOT

import yt8m_xmodal

CORE_DEPENDENCIES = ("tensorflow", "keras", "tensorflow-probability",
                     "tf-keras", "numpy", "scipy", "tensorboard", "absl-py")


def pyproject():
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def requirement_name(text):
    return re.split(r"[<>=!~;\[ ]", text, maxsplit=1)[0].strip().lower()


def test_version_is_written_once():
    project = pyproject()
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "yt8m_xmodal.__version__"}
    setup_py = (REPO_ROOT / "setup.py").read_text()
    assert "version" not in setup_py
    tree = ast.parse((REPO_ROOT / "yt8m_xmodal" / "__init__.py").read_text())
    versions = [node.value.value for node in tree.body
                if isinstance(node, ast.Assign)
                and [t.id for t in node.targets] == ["__version__"]]
    assert versions == [yt8m_xmodal.__version__]


def test_console_scripts_are_the_commands_run_functions():
    scripts = pyproject()["project"]["scripts"]
    assert set(scripts) >= {"yt8m-xmodal-train", "yt8m-xmodal-eval",
                            "yt8m-xmodal-inference", "yt8m-xmodal-subset"}
    for name, target in scripts.items():
        module_name, function = target.split(":")
        command = name.removeprefix("yt8m-xmodal-")
        assert module_name == f"yt8m_xmodal.cli.{command}"
        assert function == "run"
        # Read, not imported: the commands define flags of the same names.
        tree = ast.parse((REPO_ROOT / "yt8m_xmodal" / "cli"
                          / f"{command}.py").read_text())
        assert "run" in {node.name for node in tree.body
                         if isinstance(node, ast.FunctionDef)}
        # The root script, where there is one, runs the same function.
        root = REPO_ROOT / f"{command}.py"
        if root.exists():
            assert f"from yt8m_xmodal.cli import {command}" in root.read_text()
            assert f"{command}.run()" in root.read_text()


def test_core_dependencies_and_extras():
    project = pyproject()["project"]
    names = {requirement_name(r) for r in project["dependencies"]}
    assert names == set(CORE_DEPENDENCIES)
    extras = project["optional-dependencies"]
    assert {requirement_name(r) for r in extras["test"]} >= {"pytest"}
    assert {requirement_name(r) for r in extras["bench"]} >= {"matplotlib"}


def test_wheel_holds_the_package_metadata_and_commands(tmp_path):
    """Builds the wheel as `pip install .` does (isolated build)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("yt8m_xmodal-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist_info = next(n.split("/")[0] for n in names
                         if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(z.read(f"{dist_info}/METADATA"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(
            z.read(f"{dist_info}/entry_points.txt").decode())
    assert metadata["Version"] == yt8m_xmodal.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert any(n.startswith(f"{dist_info}/licenses/LICENSE") for n in names)
    requires = metadata.get_all("Requires-Dist")
    assert {requirement_name(r) for r in requires
            if "extra ==" not in r} == set(CORE_DEPENDENCIES)
    assert set(metadata.get_all("Provides-Extra")) >= {"test", "bench"}
    assert dict(entry_points["console_scripts"]) == pyproject()["project"][
        "scripts"]
    sources = {str(p.relative_to(REPO_ROOT))
               for p in (REPO_ROOT / "yt8m_xmodal").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    # The search service's page ships as package data.
    assert {f"yt8m_xmodal/service/static/{name}" for name in (
        "index.html", "app.js", "style.css")} <= names


def test_import_is_cheap_and_the_api_resolves():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, yt8m_xmodal; print(json.dumps(sorted(m for m in "
         "('tensorflow', 'keras', 'numpy') if m in sys.modules)))"
         .replace("json.dumps", "__import__('json').dumps")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    for name in yt8m_xmodal.__all__:
        assert getattr(yt8m_xmodal, name) is not None, name
    with pytest.raises(AttributeError):
        yt8m_xmodal.no_such_name


def readme_python_example():
    text = (REPO_ROOT / "docs" / "python_api.md").read_text()
    section = text.split("# Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    return match.group(1)


def test_readme_python_example_runs(tmp_path, capsys):
    code = readme_python_example()
    assert len(code.strip().splitlines()) <= 14
    assert "/tmp/yt8m_xmodal_api" in code
    code = code.replace("/tmp/yt8m_xmodal_api", str(tmp_path))
    namespace = {}
    exec(compile(code, "docs/python_api.md", "exec"), namespace)
    result, metrics, emb = (namespace["result"], namespace["metrics"],
                            namespace["emb"])
    assert result.step == 10
    assert (pathlib.Path(result.train_dir) / "train_result.json").exists()
    assert "queries against a gallery" in capsys.readouterr().out
    import tensorflow as tf
    num_test = sum(1 for _ in tf.data.TFRecordDataset(
        tf.io.gfile.glob(str(tmp_path / "data" / "test-*.tfrecord"))))
    assert metrics["num_queries"] == len(emb) == num_test
    # The printed metrics are those of the embeddings the example returns
    # (brute-force cosine ranks of the true pairs).
    sims = (emb.audio / np.linalg.norm(emb.audio, axis=1, keepdims=True)) @ (
        emb.video / np.linalg.norm(emb.video, axis=1, keepdims=True)).T
    ranks = (sims >= np.diag(sims)[:, None]).sum(axis=1)
    assert metrics["audio_to_video"]["recall@10"] == pytest.approx(
        np.mean(ranks <= 10))
    assert emb.audio.shape == emb.video.shape == (
        num_test, namespace["cfg"].subspace_dim)
