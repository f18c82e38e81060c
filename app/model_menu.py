"""Model > Bundled model: choose which shipped model the app runs (kept in the settings).

- ``aa_unet``: ctseg's own model (seven classes; trained on synthetic CT only, fast).
- ``blast_ct``: BLAST-CT's ensemble, trained by its authors on real head CTs of traumatic brain injury
  (Monteiro et al., Lancet Digital Health 2020): IPH (shown as ICH), IVH, extra-axial blood whose type the
  reviewer assigns, and perilesional oedema (not blood). Offered with 1, 4 or all 12 members: each member
  adds about the same time (docs/blast_ct.md gives the measured times); the validated model is all 12.
The choice is loaded at once; Model > Run model on this scan segments the open scan with it.
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
    name = str(settings.value("model/path", "") or "") or "aa_unet"
    members = int(settings.value("model/members", 0) or 0) or None
    return name, members


def choose_model(window, name: str, members: int | None) -> None:
    """Remember the choice and load that model (any run in progress goes on with the old one)."""
    window.settings.setValue("model/path", name)
    window.settings.setValue("model/members", members or 0)
    window.model.load_model(name, {"members": members} if members else {})
    window.session.log(f"model chosen: {name}" + (f" with {members} member(s)" if members else "")
                       + "; Model > Run model on this scan segments the open scan with it")


def install_model_menu(window) -> dict[tuple[str, int | None], QAction]:
    """Add Model > Bundled model (radio items); returns the actions by (name, members)."""
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
