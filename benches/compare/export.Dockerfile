# The export rows of benches/compare/all: a Debian-based image (the python3 fixture, one
# 195 MB layer) plus one small layer, exported with -o type=tar and -o type=oci.
FROM rbuild-fixtures/python3:bookworm
RUN echo x >/x
