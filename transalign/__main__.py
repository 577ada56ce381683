import sys

from transalign.cli import main

sys.exit(main())
