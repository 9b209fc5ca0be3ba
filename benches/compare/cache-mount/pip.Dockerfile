# benches/compare/cache-mount/run, CASE=pip: STAMP changes before every build, so the RUN
# under it and everything after run again; pip finds in the cache mount what the first
# build left there (on a PyPI that sends cache validators: see BENCHMARKS.md).
FROM rbuild-fixtures/python3:bookworm
ARG STAMP
RUN echo "$STAMP" >/stamp
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip pip install -r /tmp/requirements.txt
