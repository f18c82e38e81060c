"""ctseg's side of the hospital's DICOM network (pynetdicom; no Qt here).

- ``config``: the PACS settings (this node's AE title and port, the remote nodes, TLS) in ``<workspace>/pacs.toml``;
- ``net``: associations (TLS where configured), C-ECHO, status checks;
- ``inbox``: received instances filed by study/series under ``<workspace>/inbox``; others kept aside with a note;
- ``receiver``: the listener (C-STORE SCP) and series-complete detection (no instance for N seconds);
- ``segmenter``: segmenting one received series with the active model (a plain callable) and the one-at-a-time
  consumer that runs it in the background;
- ``query``: C-FIND for CT studies and series, C-MOVE / C-GET retrieval with progress;
- ``sender``: C-STORE of files to a node;
- ``outbox``: the persistent outbox of approved results (DICOM SEG, SR), retried with back-off;
- ``service``: all of it as one object (``ctseg listen``, the app's listener toggle).
"""
