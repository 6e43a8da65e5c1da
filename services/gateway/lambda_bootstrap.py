"""An execution environment's first code (AWS's ``/var/runtime/bootstrap``), run by an isolated interpreter::

    python -I -S <runtime dir>/bootstrap.py <opt dir>

It imports nothing of the stack: it puts Lambda's Python search path in front of the standard library (the
task root, the layers' ``/opt/python/lib/pythonX.Y/site-packages`` and ``/opt/python``, then the runtime's
own packages: ``awslambdaric``, boto3 and their dependencies) and hands over to ``awslambdaric``, which talks
to ``AWS_LAMBDA_RUNTIME_API`` and runs ``_HANDLER``.
"""

import os
import sys


def main() -> None:
    opt = sys.argv[1]
    site = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    sys.path[:0] = [os.environ["LAMBDA_TASK_ROOT"], f"{opt}/python/lib/{site}/site-packages", f"{opt}/python",
                    os.path.dirname(os.path.abspath(__file__))]
    from awslambdaric.__main__ import main as run

    run([sys.argv[0], os.environ["_HANDLER"]])


if __name__ == "__main__":
    main()
