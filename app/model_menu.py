"""Model > Bundled model: choose which shipped model the app runs (kept in the settings).

- ``aa_unet``: ctseg's own model (seven classes; trained on synthetic CT only, fast).
- ``blast_ct``: BLAST-CT's ensemble, trained by its authors on real head CTs of traumatic brain injury
  (Monteiro et al., Lancet Digital Health 2020): IPH (shown as ICH), IVH, extra-axial blood whose type the
  reviewer assigns, and perilesional oedema (not blood). Offered with 1, 4 or all 12 members: each member
  adds about the same time (docs/blast_ct.md gives the measured times); the validated model is all 12.
The choice is loaded at once; Model > Run model on this scan segments the open scan with it.

Model > Anatomical guard (on by default): ctseg's slice models' labels are kept only inside the cranial
cavity and where the CT numbers are plausible for the class; once the scan is done, specks (3-D pieces of a
class under 0.01 mL) and pieces the model is unsure of (a mean probability under the threshold its card names)
are dropped, and touching subdural, epidural and chronic subdural blood is given one type where the model is
sure enough of it (the share its card names) (``ctseg_core.guard``). Switching it off shows
the model's raw output; the prediction on screen was made with the previous setting until the model is
run again (the findings dock names the setting with the model).
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup

CHOICES = (  # (bundled name, members or None, menu text)
    ("aa_unet", None, "ctseg aa_unet (7 classes; synthetic training data only; fast)"),
    ("blast_ct", 1, "BLAST-CT, 1 of 12 members (trained on real TBI scans; fastest)"),
    ("blast_ct", 4, "BLAST-CT, 4 of 12 members"),
    ("blast_ct", 12, "BLAST-CT, all 12 members (the published ensemble; slowest)"),
)


def current_choice(settings) -> tuple[str, int | None]:
    """(bundled name or checkpoint path, members) as chosen; the app's default when nothing was."""
    from ctseg_core.resources import APP_DEFAULT_MEMBERS, APP_DEFAULT_MODEL

    name = str(settings.value("model/path", "") or "")
    if not name:
        return APP_DEFAULT_MODEL, APP_DEFAULT_MEMBERS
    return name, int(settings.value("model/members", 0) or 0) or None


def choose_model(window, name: str, members: int | None) -> None:
    """Remember the choice and load that model (any run in progress goes on with the old one)."""
    window.settings.setValue("model/path", name)
    window.settings.setValue("model/members", members or 0)
    window.model.load_model(name)  # with the configured options: these members, the guard setting
    window.session.log(f"model chosen: {name}" + (f" with {members} member(s)" if members else "")
                       + "; Model > Run model on this scan segments the open scan with it")


def set_guard(window, on: bool) -> None:
    """Remember the guard setting and reload the configured model with it."""
    window.settings.setValue("model/guard", bool(on))
    window.model.load_model(None)
    window.session.log("anatomical guard " + ("on: labels outside the cranial cavity or at implausible CT numbers, "
                                              "specks under 0.01 mL and pieces the model is unsure of are removed, "
                                              "touching extra-axial blood is given one type"
                                              if on else "off: the model's raw labels are shown")
                       + "; Model > Run model on this scan applies it to the open scan")


def install_guard_action(window) -> QAction:
    """Model > Anatomical guard (checkable, remembered)."""
    from app.model_runner import guard_enabled

    action = QAction("Anatomical guard (slice models)", window, checkable=True)
    action.setChecked(guard_enabled(window.settings))
    action.setToolTip("keep labels only inside the cranial cavity and at CT numbers plausible for each class; "
                      "once the scan is done, drop specks (pieces of a class under 0.01 mL) and pieces the model "
                      "is unsure of (the threshold on its model card); give touching subdural, epidural and "
                      "chronic subdural blood the type the model is sure of (the share on its card)")
    action.toggled.connect(lambda on: set_guard(window, on))
    window.menu("&Model").addAction(action)
    return action


def install_model_menu(window) -> dict[tuple[str, int | None], QAction]:
    """Add Model > Bundled model (radio items) and Model > Anatomical guard; returns the bundled-model
    actions by (name, members)."""
    window.guard_action = install_guard_action(window)
    menu = window.menu("&Model").addMenu("Bundled model")
    group = QActionGroup(window)
    group.setExclusive(True)
    chosen = current_choice(window.settings)
    actions = {}
    for name, members, text in CHOICES:
        action = QAction(text, window, checkable=True)
        action.setChecked((name, members) == chosen or (name == chosen[0] == "aa_unet"))
        action.triggered.connect(lambda _=False, n=name, m=members: choose_model(window, n, m))
        group.addAction(action)
        menu.addAction(action)
        actions[(name, members)] = action
    return actions
