"""The layers hold (docs/development/layers.md): deploy/ on top; api/, stream_processors/, sinks/
and producers/ beside each other, none importing another; openmonetize/ (the ground) below them;
schemas/ at the bottom; and the CLI, openmonetize/cli/, the composition root that alone imports
them all. The contracts are in pyproject.toml ([tool.importlinter]); import-linter reads every
import, those inside functions too. `.venv/bin/lint-imports` prints the same report by hand."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_imports_a_layer_above_its_own(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, (
        "an import breaks the layers (docs/development/layers.md says which way each may go; "
        "move the code to the layer that owns it, or let the caller pass it in):\n" + report
    )


def test_an_upward_import_inside_a_function_is_caught(tmp_path, capsys, monkeypatch):
    """The contracts' options (type-checking imports left out) must not hide a function's import."""
    for package in ("ground", "process"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "process" / "server.py").write_text("def run():\n    pass\n")
    (tmp_path / "ground" / "tool.py").write_text("def start():\n    from process.server import run\n    run()\n")
    (tmp_path / "contracts.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["ground", "process"]\nexclude_type_checking_imports = true\n\n'
        '[[tool.importlinter.contracts]]\nname = "process above ground"\ntype = "layers"\nlayers = ["process", "ground"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = lint_imports(config_filename=str(tmp_path / "contracts.toml"), no_cache=True, no_logo=True)
    assert code == 1
    assert "ground.tool -> process.server (l.2)" in capsys.readouterr().out
