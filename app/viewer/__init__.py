"""Image views: 2-D slice views (pyqtgraph) and the 3-D surface view (VTK)."""

import pyqtgraph as pg

# Arrays are (rows, cols) everywhere in ctseg: tell pyqtgraph once, before any ImageItem exists.
pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
