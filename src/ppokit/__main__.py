"""`python -m ppokit ...`, the form `torchrun --nproc_per_node=N -m ppokit train ...` launches."""

import os
import sys

from ppokit.cli import main

if __name__ == "__main__":
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: a failing rank's traceback goes into the launcher's report
        from torch.distributed.elastic.multiprocessing.errors import record

        main = record(main)
    status = main()
    if "TORCHELASTIC_RUN_ID" in os.environ:
        # the process group is closed and every output written: leave without the interpreter's teardown, where
        # gloo's worker threads, still owned by objects freed last, can abort a rank that has finished its work
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status or 0)
    sys.exit(status)
