import sys

from jitconv.cli import main

sys.exit(main())
