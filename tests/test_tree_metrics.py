"""bench/tree_metrics.py counts what issue 9 measures, on a small tree written here."""

from __future__ import annotations

from pathlib import Path

from bench.tree_metrics import measure

LAYOUT = '''
from dash import dcc
def layout():
    return [dcc.Store(id="a"), dcc.Store(id="b")]
'''
CALLBACKS = '''
from dash import Input, Output
STATE = Output("view-state", "data", allow_duplicate=True)
def register(app):
    app.callback(STATE, Input("x", "n_clicks"))(lambda n: n)
    app.clientside_callback("f", STATE, Output("score", "children"), Input("y", "n_clicks"))
    @app.callback(Output("score", "children", allow_duplicate=True), Input("z", "value"))
    def show(value):
        return value
'''
ENGINE = '''
from backend.engine.model import _check_directory, load
from dash._jupyter import _jupyter_config
import backend.engine.store as store
def f(engine):
    return store._private, engine._key(), load
'''


def test_tree_metrics_counts_stores_shared_outputs_and_private_names(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "layout.py").write_text(LAYOUT)
    (tmp_path / "app" / "callbacks.py").write_text(CALLBACKS)
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "atlas.py").write_text(ENGINE)
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "page.js").write_text("const a = 1;\n\nfunction f() {}\n")
    figures = measure(tmp_path, pylint=None)
    assert figures["js"] == {"files": 1, "lines": 3, "non_blank": 2}
    assert figures["dcc_stores"] == 2
    assert figures["allow_duplicate"] == 3  # STATE in two callbacks, and one inline
    assert figures["shared_output_names"] == {"'view-state'.'data'": 2, "'score'.'children'": 2}
    private = figures["private_imports"]
    assert private["project"] == {"backend/atlas.py": ["backend.engine.model._check_directory",
                                                       "backend.engine.store._private"]}
    assert private["third_party"] == {"backend/atlas.py": ["dash._jupyter._jupyter_config"]}
    assert private["private_attributes"] == {"backend/atlas.py": ["engine._key"]}
