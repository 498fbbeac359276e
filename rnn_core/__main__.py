import sys

from rnn_core.cli import main

sys.exit(main())
