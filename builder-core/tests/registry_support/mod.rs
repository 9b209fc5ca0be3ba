//! A private docker-registry on 127.0.0.1 for one test, and small images to move.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_core::{
    ContentStore, Image, ImageConfig, ImageFormat, ImageName, ImageSpec, LayerOptions,
    import_rootfs,
};

/// Fails the test with a clear message when `tool` is not installed.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "missing tool {tool}: install the Debian package {package} to run the registry tests"
    );
}

/// A `docker-registry serve` process with filesystem storage in a temp dir.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The temp dir: `config.yml`, `data/`, `registry.log`.
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; with `htpasswd` (file contents), Basic auth is required.
    pub fn start(htpasswd: Option<&str>) -> Self {
        require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        // A free port: bind to 0, read it, release it for the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
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
                    if answer.starts_with("HTTP/1.0 200")
                        || answer.starts_with("HTTP/1.0 401")
                        || answer.starts_with("HTTP/1.1 200")
                        || answer.starts_with("HTTP/1.1 401")
                    {
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

/// A rootfs tar holding busybox-static (about 2 MB) and a marker file.
pub fn busybox_rootfs(marker: &str) -> Vec<u8> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("missing busybox: install the Debian package busybox-static");
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name(busybox, "bin/busybox").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(marker.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(&mut h, "etc/marker", marker.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

/// Imports a busybox image for `architecture` into `store` and names it `name`.
pub fn make_image(
    store: &ContentStore,
    name: &str,
    marker: &str,
    format: ImageFormat,
    architecture: &str,
) -> Image {
    let mut config = ImageConfig::for_host();
    config.architecture = architecture.to_owned();
    let spec = ImageSpec {
        config,
        format,
        ..Default::default()
    };
    let image = import_rootfs(
        store,
        &busybox_rootfs(marker)[..],
        &spec,
        &LayerOptions::default(),
    )
    .unwrap();
    let name: ImageName = name.parse().unwrap();
    store.tag(&name, &image.descriptor).unwrap();
    image
}

/// Runs skopeo and returns its stdout, failing the test with its stderr.
pub fn skopeo(args: &[&str]) -> String {
    require_tool("skopeo", "skopeo");
    let out = Command::new("skopeo")
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The digest skopeo reads for `docker://<reference>`.
pub fn skopeo_digest(reference: &str) -> String {
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ])
    .trim()
    .to_owned()
}
