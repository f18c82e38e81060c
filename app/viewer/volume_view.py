"""The 3-D view: class surfaces (and a semi-transparent skull) in VTK, rebuilt off the GUI thread.

Meshes are built in a worker (app.viewer.surfaces, debounced after label changes); only the finished
vtkPolyData is handed to the renderer here, on the GUI thread. Where no OpenGL window can be made
(Qt's offscreen platform, CTSEG_NO_3D=1, or the view turned off) a placeholder label is shown instead.
"""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ctseg_core.labels import LABEL_CLASSES
from app.session import Session
from app.workers import run_task

REBUILD_DEBOUNCE_MS = 400
NO_GL_PLATFORMS = ("offscreen", "minimal", "vnc")


def rendering_unavailable_reason() -> str | None:
    """Why 3-D rendering cannot work here (None: try it)."""
    if os.environ.get("CTSEG_NO_3D", "") not in ("", "0"):
        return "3-D view turned off (CTSEG_NO_3D)"
    platform = QGuiApplication.platformName()
    if platform in NO_GL_PLATFORMS:
        return f"3-D view unavailable: Qt platform '{platform}' has no OpenGL window"
    return None


class VolumeView(QWidget):
    surfaces_updated = Signal(object)  # {class id: vtkPolyData} just shown (or built, without rendering)
    maximise_requested = Signal()  # the "maximise" button: the 3-D view alone in the window (again: all)

    def __init__(self, session: Session, enabled: bool = True, parent=None):
        super().__init__(parent)
        self.session = session
        self.vtk_widget = None
        self.renderer = None
        self.actors: dict[int, object] = {}
        self.head_actor = None
        self._busy = False
        self._again = False
        self._head_for = None
        self.reason = None if enabled else "3-D view turned off"
        self.reason = self.reason or rendering_unavailable_reason()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if self.reason is None:
            try:
                self._make_vtk_widget(layout)
            except Exception as exc:  # noqa: BLE001 - no OpenGL: degrade to the placeholder
                self.reason = f"3-D view unavailable: {exc}"
        if self.reason is not None:
            self.placeholder = QLabel(self.reason)
            self.placeholder.setAlignment(Qt.AlignCenter)
            self.placeholder.setWordWrap(True)
            self.placeholder.setStyleSheet("color: #888; background: #111;")
            layout.addWidget(self.placeholder, 1)
            session.log(self.reason, "warning")
            return
        bar = QHBoxLayout()
        self.show_head = QCheckBox("skull")
        self.show_head.setChecked(True)
        self.show_head.toggled.connect(self._apply_visibility)
        reset = QPushButton("reset view")
        reset.clicked.connect(self.reset_camera)
        self.maximise_button = QPushButton("maximise")
        self.maximise_button.setToolTip("the 3-D view alone in the window; again to restore (Ctrl+3)")
        self.maximise_button.clicked.connect(self.maximise_requested)
        bar.addWidget(self.show_head)
        bar.addStretch(1)
        bar.addWidget(reset)
        bar.addWidget(self.maximise_button)
        layout.addLayout(bar)

        self._timer = QTimer(self, singleShot=True, interval=REBUILD_DEBOUNCE_MS)
        self._timer.timeout.connect(self.rebuild)
        session.volume_changed.connect(self._on_volume)
        session.labels_changed.connect(lambda which, box: self._schedule() if which == session.show_source else None)
        session.display_changed.connect(self._on_display)
        session.inference_state_changed.connect(lambda running: None if running else self._schedule())

    @property
    def available(self) -> bool:
        return self.reason is None

    def _make_vtk_widget(self, layout) -> None:
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
        from vtkmodules.vtkRenderingCore import vtkRenderer
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL back end)

        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.08, 0.08, 0.1)
        window = self.vtk_widget.GetRenderWindow()
        window.AddRenderer(self.renderer)
        self.vtk_widget.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        self.vtk_widget.Initialize()
        self.orientation_marker = _orientation_marker(self.vtk_widget)
        layout.addWidget(self.vtk_widget, 1)

    # ---- building (worker) ----
    def _schedule(self) -> None:
        """Rebuild soon (debounced); a hidden view waits until it is shown again."""
        if not self.isVisible():
            self._stale = True
            return
        if self.available and self.session.has_volume() and not self._timer.isActive():
            self._timer.start(REBUILD_DEBOUNCE_MS * (3 if self.session.inference_running else 1))

    def showEvent(self, ev):
        super().showEvent(ev)
        if getattr(self, "_stale", False):
            self._stale = False
            self._schedule()

    def _on_volume(self) -> None:
        self._head_for = None
        for actor in list(self.actors.values()) + ([self.head_actor] if self.head_actor else []):
            self.renderer.RemoveActor(actor)
        self.actors, self.head_actor = {}, None
        self._first_camera = True
        self._schedule()

    def rebuild(self) -> None:
        """Build the meshes of the displayed labels in a worker; the newest request wins."""
        if not self.session.has_volume():
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        from app.viewer.surfaces import class_surfaces, head_surface

        labels = self.session.displayed_labels()
        snapshot, geometry = labels.array.copy(), labels.geometry
        volume = self.session.volume if self._head_for is not self.session.volume else None

        def build():
            head = head_surface(volume.array, volume.geometry) if volume is not None else None
            return class_surfaces(snapshot, geometry), head, volume

        run_task(build, self._on_built, self._on_error)

    def _on_error(self, error) -> None:
        self._busy = False
        self.session.log(f"3-D surfaces failed: {error.message()}", "error")

    def _on_built(self, result) -> None:
        self._busy = False
        surfaces, head, volume = result
        if volume is not None and volume is self.session.volume:
            self._head_for = volume
            self._set_head(head)
        self._set_surfaces(surfaces)
        if self._again:
            self._again = False
            self.rebuild()

    # ---- rendering (GUI thread) ----
    def _actor(self, poly, rgb, opacity: float):
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        mapper = vtkPolyDataMapper()
        mapper.SetInputData(poly)
        mapper.ScalarVisibilityOff()
        actor = vtkActor()
        actor.SetMapper(mapper)
        prop = actor.GetProperty()
        prop.SetColor(*[c / 255 for c in rgb])
        prop.SetOpacity(opacity)
        prop.SetSpecular(0.2)
        return actor

    def _set_head(self, poly) -> None:
        if self.head_actor is not None:
            self.renderer.RemoveActor(self.head_actor)
        self.head_actor = self._actor(poly, (230, 220, 200), 0.15)
        self.head_actor.GetProperty().BackfaceCullingOn()
        self.renderer.AddActor(self.head_actor)

    def _set_surfaces(self, surfaces: dict) -> None:
        for cid in list(self.actors):
            if cid not in surfaces:
                self.renderer.RemoveActor(self.actors.pop(cid))
        for cid, poly in surfaces.items():
            if cid in self.actors:
                self.actors[cid].GetMapper().SetInputData(poly)
            else:
                self.actors[cid] = self._actor(poly, LABEL_CLASSES[cid].colour, 1.0)
                self.renderer.AddActor(self.actors[cid])
        self._apply_visibility()
        if getattr(self, "_first_camera", True):
            self._first_camera = False
            self.reset_camera()
        self.render()
        self.surfaces_updated.emit(surfaces)

    def _on_display(self) -> None:
        self._apply_visibility()
        self._schedule()  # the shown source may have changed

    def _apply_visibility(self, *_) -> None:
        for cid, actor in self.actors.items():
            actor.SetVisibility(self.session.class_visible[cid] and self.session.show_labels)
        if self.head_actor is not None:
            self.head_actor.SetVisibility(self.show_head.isChecked())
        self.render()

    def reset_camera(self) -> None:
        """Look at the face from the front (anterior), superior up."""
        if self.renderer is None:
            return
        cam = self.renderer.GetActiveCamera()
        cam.SetFocalPoint(0, 0, 0)
        cam.SetPosition(0, -1, 0)  # LPS: -y is anterior
        cam.SetViewUp(0, 0, 1)
        self.renderer.ResetCamera()
        self.render()

    def snapshot(self):
        """The rendered 3-D scene as a QImage (QWidget.grab cannot read OpenGL pixels); None if unavailable."""
        if self.vtk_widget is None or not self.isVisible():
            return None
        from PySide6.QtGui import QImage
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        window = self.vtk_widget.GetRenderWindow()
        window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        out = grab.GetOutput()
        w, h, _ = out.GetDimensions()
        rgb = vtk_to_numpy(out.GetPointData().GetScalars()).reshape(h, w, 3)[::-1].copy()
        return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()

    def render(self) -> None:
        if self.vtk_widget is not None and self.isVisible():
            self.vtk_widget.GetRenderWindow().Render()


def _orientation_marker(interactor):
    """A cube in the lower-left corner labelled with the patient directions (LPS world: +x is the patient's
    left, +y posterior, +z superior); it turns with the camera."""
    from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
    from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

    cube = vtkAnnotatedCubeActor()
    for face, text in (("XPlus", "L"), ("XMinus", "R"), ("YPlus", "P"), ("YMinus", "A"), ("ZPlus", "S"),
                       ("ZMinus", "I")):
        getattr(cube, f"Set{face}FaceText")(text)
    cube.SetXFaceTextRotation(0)
    cube.SetZFaceTextRotation(0)
    cube.GetCubeProperty().SetColor(0.25, 0.3, 0.4)
    cube.GetTextEdgesProperty().SetColor(0.8, 0.8, 0.8)
    for prop in (cube.GetXPlusFaceProperty(), cube.GetXMinusFaceProperty()):
        prop.SetColor(1.0, 0.75, 0.3)
    for prop in (cube.GetYPlusFaceProperty(), cube.GetYMinusFaceProperty()):
        prop.SetColor(0.5, 0.85, 1.0)
    for prop in (cube.GetZPlusFaceProperty(), cube.GetZMinusFaceProperty()):
        prop.SetColor(0.6, 1.0, 0.6)
    widget = vtkOrientationMarkerWidget()
    widget.SetOrientationMarker(cube)
    widget.SetInteractor(interactor)
    widget.SetViewport(0.0, 0.0, 0.14, 0.14)
    widget.SetEnabled(1)
    widget.InteractiveOff()
    return widget
