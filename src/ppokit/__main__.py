"""`python -m ppokit ...`, the form `torchrun --nproc_per_node=N -m ppokit train ...` launches."""

import os
import sys

from ppokit.cli import main

if __name__ == "__main__":
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: a failing rank's traceback goes into the launcher's report
        from torch.distributed.elastic.multiprocessing.errors import record

        main = record(main)
    sys.exit(main())
