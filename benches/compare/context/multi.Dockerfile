# Six stages: a shared base, two branches built from it, an independent one, a join and
# the final image that copies from two of them.
FROM busybox AS base
RUN mkdir /out && echo base >/out/base

FROM base AS left
RUN echo left >/out/left

FROM base AS right
RUN for i in $(seq 1 100); do echo "$i"; done >/out/right

FROM busybox AS files
COPY files/ /files/
RUN ls -l /files >/listing

FROM left AS join
COPY --from=right /out/right /out/right
RUN cat /out/* >/out/all

FROM busybox
COPY --from=join /out/all /all
COPY --from=files /listing /listing
CMD ["cat", "/all"]
