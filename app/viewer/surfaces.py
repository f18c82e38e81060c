"""Surface meshes for the 3-D view, built with VTK filters only (no rendering, no Qt): safe in a worker thread.

Class surfaces: each class present is cropped to its bounding box (plus a zero border, so meshes close),
meshed with vtkDiscreteFlyingEdges3D, smoothed (windowed sinc with a low pass band, so that the stairs of
thick slices do not show; the volume is kept) and given normals. Points are in patient
LPS millimetres (the scan's direction and origin applied), so every mesh lines up with the others.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import (vtkFlyingEdges3D, vtkPolyDataNormals, vtkWindowedSincPolyDataFilter)
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformFilter

from ctseg_core.labels import LABEL_CLASSES
from ctseg_core.volume import Geometry

HEAD_THRESHOLD_HU = 300.0  # the skull: bone is far above brain and blood
HEAD_STEP = 2  # the skull surface is built on every 2nd row and column (a context surface, not a measurement)
SMOOTH_ITERATIONS = 30
PASS_BAND = 0.001  # windowed-sinc pass band: lower is smoother (3D Slicer's "smoothing factor" 0.75)


def image_data(array: np.ndarray, spacing_zyx, offset_zyx=(0, 0, 0)) -> vtkImageData:
    """A vtkImageData view of a (z, y, x) array, in index-millimetre space (no direction applied)."""
    arr = np.ascontiguousarray(array)
    img = vtkImageData()
    img.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    img.SetSpacing(*[float(s) for s in spacing_zyx[::-1]])
    img.SetOrigin(*[float(o * s) for o, s in zip(offset_zyx[::-1], spacing_zyx[::-1])])
    scalars = numpy_to_vtk(arr.ravel(), deep=True)
    scalars.SetName("values")
    img.GetPointData().SetScalars(scalars)
    return img


def _to_patient(poly: vtkPolyData, geometry: Geometry) -> vtkPolyData:
    """Apply the scan's direction and origin: index-millimetre space -> patient LPS millimetres."""
    d = geometry.direction_matrix
    matrix = [0.0] * 16
    for r in range(3):
        for c in range(3):
            matrix[4 * r + c] = float(d[r, c])
        matrix[4 * r + 3] = float(geometry.origin[r])
    matrix[15] = 1.0
    transform = vtkTransform()
    transform.SetMatrix(matrix)
    flt = vtkTransformFilter()
    flt.SetTransform(transform)
    flt.SetInputData(poly)
    flt.Update()
    return flt.GetOutput()


def _smooth(poly: vtkPolyData, iterations: int) -> vtkPolyData:
    if iterations > 0 and poly.GetNumberOfPoints() > 0:
        sm = vtkWindowedSincPolyDataFilter()
        sm.SetInputData(poly)
        sm.SetNumberOfIterations(iterations)
        sm.SetPassBand(PASS_BAND)
        sm.FeatureEdgeSmoothingOff()
        sm.BoundarySmoothingOff()
        sm.NonManifoldSmoothingOn()
        sm.NormalizeCoordinatesOn()
        sm.Update()
        poly = sm.GetOutput()
    normals = vtkPolyDataNormals()
    normals.SetInputData(poly)
    normals.SplittingOff()
    normals.Update()
    return normals.GetOutput()


def class_surface(labels: np.ndarray, geometry: Geometry, class_id: int, bbox=None,
                  smooth_iterations: int = SMOOTH_ITERATIONS) -> vtkPolyData:
    """The smoothed surface of one class (empty polydata when absent)."""
    from scipy import ndimage

    if bbox is None:
        objs = ndimage.find_objects((labels == class_id).astype(np.uint8))
        if not objs:
            return vtkPolyData()
        bbox = objs[0]
    crop = np.pad(labels[bbox] == class_id, 1).astype(np.uint8)
    offset = tuple(s.start - 1 for s in bbox)
    fe = vtkDiscreteFlyingEdges3D()
    fe.SetInputData(image_data(crop, geometry.spacing, offset))
    fe.SetValue(0, 1)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    return _to_patient(_smooth(fe.GetOutput(), smooth_iterations), geometry)


def class_surfaces(labels: np.ndarray, geometry: Geometry,
                   smooth_iterations: int = SMOOTH_ITERATIONS) -> dict[int, vtkPolyData]:
    """{class id: surface} for every label (lesion class or review label) present in ``labels`` (z, y, x)."""
    from scipy import ndimage

    objs = ndimage.find_objects(labels, max_label=LABEL_CLASSES[-1].id)
    out = {}
    for cls in LABEL_CLASSES[1:]:
        bbox = objs[cls.id - 1]
        if bbox is not None:
            out[cls.id] = class_surface(labels, geometry, cls.id, bbox, smooth_iterations)
    return out


def head_surface(hu: np.ndarray, geometry: Geometry, threshold: float = HEAD_THRESHOLD_HU,
                 step: int = HEAD_STEP) -> vtkPolyData:
    """The skull surface (iso-surface at ``threshold`` HU) on a subsampled grid, for context."""
    sub = np.pad(hu[:, ::step, ::step], 1, constant_values=-1024.0).astype(np.float32)
    spacing = (geometry.spacing[0], geometry.spacing[1] * step, geometry.spacing[2] * step)
    fe = vtkFlyingEdges3D()
    fe.SetInputData(image_data(sub, spacing, (-1, -1, -1)))
    fe.SetValue(0, threshold)
    fe.ComputeNormalsOn()
    fe.Update()
    return _to_patient(fe.GetOutput(), geometry)
