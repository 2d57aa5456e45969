"""tests/slow_parity.py — tests/test_parity.py at full size (make test-slow): timm's ViT-B/16 at
224^2 and MONAI's ViT-B 3D encoder as UNETR builds it (96^3, patch 16, 12 blocks), each through
tools/convert_checkpoint.py and `vita features`, against the library's float64 forward
(NMSE < 1e-10 at every block and the final norm; the reasoning is in test_parity.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_parity  # noqa: E402

if __name__ == "__main__":
    test_parity.main("slow")
