ARG BASE=busybox
FROM $BASE AS deps
RUN echo deps
FROM busybox AS tool
RUN echo tool
FROM deps
COPY --from=tool /x /y
RUN --mount=type=cache,target=/c echo hi
