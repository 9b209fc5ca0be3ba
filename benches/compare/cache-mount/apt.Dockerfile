# benches/compare/cache-mount/run, CASE=apt (the default): STAMP changes before every
# build, so the RUN under it and everything after run again; from the second build on,
# apt-get finds its package lists and the downloaded .debs in the cache mounts.
FROM rbuild-fixtures/python3:bookworm
ARG STAMP
RUN echo "$STAMP" >/stamp
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev
