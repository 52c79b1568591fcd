"""The runtime must never import torch or transformers: laptops install it without them."""

import subprocess
import sys

HEAVY = ("torch", "transformers")


def test_import_and_score_never_import_torch(small_bpe_gguf, tmp_path):
    source = tmp_path / "s.json"
    source.write_text('{"question": "What is 1+1?", "steps": ["1+1=2."]}')
    code = f"""
import sys
import rprm_lite
from rprm_lite.cli import main
try:
    main(["score", {str(source)!r}, "--model", {str(small_bpe_gguf)!r}, "--k", "1", "--max-tokens", "2"])
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = [name for name in {HEAVY!r} if name in sys.modules]
print("HEAVY:", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "HEAVY: []" in result.stdout
