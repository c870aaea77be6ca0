"""`filequeue console`: a small read-only web page over the Python API (the `console` extra)."""
