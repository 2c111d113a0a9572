import sys

from vlmem.cli import main

sys.exit(main())
