"""tests/oracle/make_oracles.py OUTDIR — generates every oracle file the C tests read, with
Debian's python3-torch. Cheap (seconds); rerun by `make test` every time, so the files always
match the scripts."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
os.makedirs(out, exist_ok=True)
for script in sorted(os.listdir(here)):
    if script.endswith("_oracle.py"):
        subprocess.run([sys.executable, os.path.join(here, script), out], check=True)
