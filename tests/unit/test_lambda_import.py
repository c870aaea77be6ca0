"""Cold starts pay for what the entry module imports: pypdf, psycopg and the OCR stack must load on first use only."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.paths import REPO_ROOT


def test_importing_the_lambda_entry_loads_neither_pypdf_nor_psycopg_nor_the_ocr_stack():
    probe = (
        "import json, sys; import handlers.lambda_entry; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pypdf', 'psycopg', 'psycopg_pool', 'pgvector', 'charset_normalizer', 'PIL', 'pypdfium2', 'pytesseract'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=60
    )
    assert json.loads(result.stdout) == []
