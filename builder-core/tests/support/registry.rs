//! A private `docker-registry serve` on a loopback address for one test, with optional
//! Basic auth (htpasswd).
//!
//! Shared by the tests of rbuild-core and rbuild-cli (the CLI's `tests/support/mod.rs`
//! includes this file beside `require.rs`), so it uses nothing of either crate.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::require::require_tool;

/// A `docker-registry serve` process with filesystem storage in a temp dir.
pub struct Registry {
    child: Child,
    /// `HOST:PORT`.
    pub addr: String,
    /// The temp dir: `config.yml`, `data/`, `registry.log`.
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on 127.0.0.1; with `htpasswd` (file contents), Basic auth is
    /// required.
    pub fn start(htpasswd: Option<&str>) -> Self {
        Self::start_on("127.0.0.1", htpasswd)
    }

    /// A registry on 127.0.0.1 that wants Basic auth from `user`/`password`.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Self {
        Self::start(Some(&htpasswd_line(user, password)))
    }

    /// A registry on loopback address `host` (`127.0.0.2` is not one rbuild speaks plain
    /// HTTP to unless told it is insecure).
    pub fn start_on(host: &str, htpasswd: Option<&str>) -> Self {
        require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        // A free port: bind to 0, read it, release it for the registry.
        let port = TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("{host}:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some(lines) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, lines).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut reg = Self { child, addr, dir };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited during start-up ({status}): {}",
                    self.log()
                );
            }
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer);
                    let up = ["200", "401"].iter().any(|code| {
                        answer.starts_with(&format!("HTTP/1.1 {code}"))
                            || answer.starts_with(&format!("HTTP/1.0 {code}"))
                    });
                    if up {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "docker-registry did not answer on {}: {}",
            self.addr,
            self.log()
        );
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry keeps blob `hex`.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bcrypt htpasswd line made with the system crypt(3) through perl.
pub fn htpasswd_line(user: &str, password: &str) -> String {
    require_tool("perl", "perl-base");
    let out = Command::new("perl")
        .arg("-e")
        .arg(r#"print crypt($ENV{PW}, '$2b$10$abcdefghijklmnopqrstuv')"#)
        .env("PW", password)
        .output()
        .unwrap();
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(
        hash.starts_with("$2b$10$"),
        "the system crypt(3) does not make bcrypt hashes: {hash:?}"
    );
    format!("{user}:{hash}\n")
}
