#!/bin/sh
# Captures the tty progress view of a command in a tmux pane, mid-run and at the end.
#
#   docs/progress/capture.sh NAME WIDTH HEIGHT MID_SECONDS END_SECONDS -- COMMAND...
#
# writes docs/progress/NAME-mid.txt (the pane MID_SECONDS after the start) and
# docs/progress/NAME-end.txt (after END_SECONDS, with the scroll-back). The captures of a
# replayed build were made with, from the repository root:
#
#   R="target/debug/rbuild debug progress-replay --progress tty --speed 1"
#   docs/progress/capture.sh build-ok 100 30 4.5 11 -- $R cli/tests/progress_cases/build-ok/events.jsonl
#   docs/progress/capture.sh build-ok-narrow 40 24 4.5 11 -- $R cli/tests/progress_cases/build-ok/events.jsonl
#   docs/progress/capture.sh step-fails 100 40 2.2 4 -- $R cli/tests/progress_cases/step-fails/events.jsonl
#   docs/progress/capture.sh parallel-stages-fail 100 40 2.5 4 -- $R cli/tests/progress_cases/parallel-stages-fail/events.jsonl
#
# A real build is captured the same way: `-- target/debug/rbuild --progress tty ...`.
set -eu
name=$1 width=$2 height=$3 mid=$4 end=$5
shift 5
[ "$1" = "--" ] && shift
dir=$(dirname "$0")
socket="rbuild-capture-$$"
trap 'tmux -L "$socket" kill-server 2>/dev/null || true' EXIT
tmux -L "$socket" new-session -d -s c -x "$width" -y "$height" "$*; sleep 600"
sleep "$mid"
tmux -L "$socket" capture-pane -p -t c > "$dir/$name-mid.txt"
sleep "$(echo "$end - $mid" | bc)"
tmux -L "$socket" capture-pane -p -t c -S -200 > "$dir/$name-end.txt"
# Trailing blank rows of the pane say nothing.
for f in "$dir/$name-mid.txt" "$dir/$name-end.txt"; do
  sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$f"
done
