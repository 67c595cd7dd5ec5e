import sys

from tools.standin.generator import main

sys.exit(main())
