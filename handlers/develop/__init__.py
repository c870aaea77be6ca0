"""A developer's own machine: the embedded stack (moto, PostgreSQL with pgvector), `filequeue demo` and `dev`."""
