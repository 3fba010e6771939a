"""Generate the embedded demo workspace (channel + projects + locks) under examples/demo/.

Run: python examples/make_demo.py [OUTPUT_DIR]. The root dodo.py runs it for you.
"""

import sys
from pathlib import Path

from pixibuild.demo.demo import write_demo

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "demo"
    for name, path in write_demo(out).items():
        print(f"{name}: {path}")
