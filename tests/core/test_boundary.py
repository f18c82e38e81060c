"""The core never imports Qt, VTK or the app: checked in a fresh interpreter."""

import subprocess
import sys

import ctseg_core

CHECK = """
import sys, pkgutil, importlib, ctseg_core
for m in pkgutil.walk_packages(ctseg_core.__path__, 'ctseg_core.'):
    if m.name.endswith('__main__'):
        continue
    importlib.import_module(m.name)
bad = [n for n in sys.modules if n.split('.')[0] in ('PySide6', 'pyqtgraph', 'vtk', 'vtkmodules', 'app')]
print(','.join(bad))
"""


def test_core_imports_no_gui_modules():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"ctseg_core pulled in GUI modules: {out.stdout}"
    assert len(ctseg_core.__version__) > 0
