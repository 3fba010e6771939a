import sys

from pixibuild.cli import main

sys.exit(main())
