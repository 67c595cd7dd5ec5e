"""``python -m hand_recon_train.evaluation``: see cli.py."""

import sys

from .cli import main

sys.exit(main())
