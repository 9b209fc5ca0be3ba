#!/bin/sh
# Runs inside the benchmark builds: a little file churn, like an install script.
set -e
mkdir -p /var/lib/bench
for f in /app/files/*; do
  wc -c "$f" >>/var/lib/bench/sizes
done
sort -n /var/lib/bench/sizes >/var/lib/bench/sorted
