"""PURE mapping between history items and paths: folder scheme, file names, sanitising, collisions.

No I/O, no clock, no globals: the same items and time zone always give the same paths, on
every machine. The mount and the exporters both use it, so an S3 key and a mount path agree.

Scheme (MONTH = YYYY-MM, DAY = YYYY-MM-DD, in the chosen time zone):
    by-voice/<voice>/<MONTH>/<DAY>/<stem><ext>
    by-date/<MONTH>/<DAY>/<voice>/<stem><ext>
with the metadata sidecar ``<stem>.json`` beside each audio file, and optionally ``<stem>.wav``.
``<stem>`` is ``HH-MM-SS <start of text> [<item id prefix>]``.
"""
# STUB: signatures are the contract; the bodies are being written.
