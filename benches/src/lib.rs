//! Shared helpers for rbuild's benchmarks; the benchmarks live in `benches/benches/`.
#![deny(missing_docs)]

/// One stage of a realistic Dockerfile: the repeated unit of [`dockerfile_of_size`].
const STAGE: &str = r#"FROM debian:bookworm-slim AS build-{n}
ARG VERSION=1.{n}.0
ENV PATH=/opt/app/bin:$PATH \
    LANG=C.UTF-8 \
    APP_HOME=/opt/app
WORKDIR /src/{n}
COPY --chown=1000:1000 --chmod=0644 go.mod go.sum ./
RUN --mount=type=cache,target=/root/.cache,sharing=locked \
    apt-get update && \
    # comment inside a continuation
    apt-get install -y --no-install-recommends ca-certificates curl && \
    rm -rf /var/lib/apt/lists/*
RUN <<EOF
set -e
echo "stage {n}" > /etc/stage
EOF
COPY --from=build-{n} ["/out/app", "/usr/local/bin/app-{n}"]
LABEL org.opencontainers.image.version="${VERSION}" maintainer="dev@example.com"
EXPOSE 8080/tcp 9090
HEALTHCHECK --interval=30s --timeout=3s CMD curl -f http://localhost:8080/ || exit 1
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/app-{n}"]
CMD ["--serve", "--port=8080"]

"#;

/// A Dockerfile of about `bytes` bytes: stages of every common instruction, repeated.
pub fn dockerfile_of_size(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + STAGE.len());
    out.push_str("# syntax=docker/dockerfile:1\nARG BASE=debian\n");
    let mut n = 0;
    while out.len() < bytes {
        out.push_str(&STAGE.replace("{n}", &n.to_string()));
        n += 1;
    }
    out
}

/// A Dockerfile of about `bytes` bytes that is one RUN instruction continued over many
/// lines: the shape that makes naive line joining quadratic.
pub fn one_long_instruction(bytes: usize) -> String {
    let mut out = String::from("FROM scratch\nRUN echo start");
    while out.len() < bytes {
        out.push_str(" \\\n    && echo \"a line of the continued instruction\"");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_dockerfiles_parse() {
        let big = dockerfile_of_size(64 * 1024);
        assert!(big.len() >= 64 * 1024);
        rbuild_dockerfile::parse(&big).expect("the generated Dockerfile is valid");
        let long = one_long_instruction(64 * 1024);
        rbuild_dockerfile::parse(&long).expect("the long instruction is valid");
    }
}
