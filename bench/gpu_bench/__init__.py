"""The parts of ``bench/gpu_check.py``, the one GPU benchmark: a module per stage family, the shared
configs and trial timing, and the table. Imported with ``bench/`` on ``sys.path`` (the script puts it there)."""
