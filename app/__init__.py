"""ctseg desktop application (PySide6 + pyqtgraph, VTK for 3D). The GUI only: all logic is in ctseg_core."""
