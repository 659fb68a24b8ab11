"""One module per command: config -> data -> the sweep engine or a trial -> report. The thin
``python -m le_ray.<command>`` modules dispatch here."""
