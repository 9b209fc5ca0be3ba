# The metadata-after-200mb row of benches/compare/all: a fresh 200 MB layer of random data
# (it does not compress; busybox's head takes a byte count, no M suffix), then a metadata
# step right after it, whose own time the row reports (issue 18: `WORKDIR /src` after a
# 200 MB apt-get layer took 1.2-4.0 s; target <= 50 ms).
FROM busybox
RUN head -c 200000000 /dev/urandom >/big
WORKDIR /x
