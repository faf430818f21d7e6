"""`python -m services.simvenue`: run the simulated venue (supervisord program `simvenue`)."""

import sys

from services.simvenue import main

sys.exit(main())
