#!/bin/sh
# The Lambda custom runtime's bootstrap: provided.al2023 runs it with _HANDLER
# set to the image command (ImageConfig.Command in infra/template.yaml).
# LAMBDA_TASK_ROOT is /var/task on Lambda; the emulator tests lay the task out elsewhere.
case "${_HANDLER:-serve}" in
  serve | batch) exec "${LAMBDA_TASK_ROOT:-/var/task}/${_HANDLER:-serve}" ;;
  *) echo "bootstrap: unknown handler '${_HANDLER}': set the image command to serve or batch" >&2; exit 1 ;;
esac
