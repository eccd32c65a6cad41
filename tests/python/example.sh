#!/bin/sh
# Run the Python example with the interpreter given, skipped (77) where numpy
# is missing:  example.sh PYTHON EXAMPLE [ARGS...]
py=$1
shift
"$py" -c 'import numpy' 2>/dev/null || { echo 'SKIPPED: python3-numpy is missing'; exit 77; }
exec "$py" "$@"
