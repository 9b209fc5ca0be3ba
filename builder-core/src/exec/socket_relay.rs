//! A listening unix socket whose every connection is relayed to another socket: how an
//! ssh agent reaches a step (`RUN --mount=type=ssh`). The solver listens on a socket of
//! its own, with the mount's owner and mode, for the sandbox to bind; the chroot
//! isolation, which cannot bind, listens a second time at the mount's target in the
//! step's root and relays to the first.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Relays connections to a socket until dropped; its socket file stays where it was
/// made (removing it is the owner's job).
pub(crate) struct SocketRelay {
    /// The listening socket (a second handle), shut down to stop the accept loop.
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SocketRelay {
    /// Listens on a new socket named `name` in the directory `dir` (an open descriptor,
    /// so neither a long path nor a link on the way matters) and relays each connection
    /// to `to`, reached the same way (through its directory, opened now), so neither
    /// path needs to fit a socket address.
    pub(crate) fn listen_in(dir: &impl AsRawFd, name: &Path, to: PathBuf) -> io::Result<Self> {
        let fd_path =
            |fd: i32, name: &Path| Path::new("/proc/self/fd").join(fd.to_string()).join(name);
        let upstream_dir = std::fs::File::open(to.parent().unwrap_or(Path::new("/")))?;
        let upstream_name = to.file_name().map(PathBuf::from).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a socket path names no file")
        })?;
        let upstream = fd_path(upstream_dir.as_raw_fd(), &upstream_name);
        let path = fd_path(dir.as_raw_fd(), name);
        let listener = bind_as(dir, name, &path)?;
        let handle = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Held for the `/proc/self/fd` path to the upstream socket.
            let _upstream_dir = upstream_dir;
            loop {
                let client = listener.accept();
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let client = match client {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        // Out of descriptors, say: wait rather than spin.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                };
                let Ok(upstream) = UnixStream::connect(&upstream) else {
                    // The client sees the connection close: the other end is gone.
                    continue;
                };
                relay(client, upstream);
            }
        });
        Ok(SocketRelay {
            listener: handle,
            stop,
            thread: Some(thread),
        })
    }
}

/// Binds a listening socket at `path` (`name` in `dir`); a name too long for a socket
/// address is bound under a short one first and renamed (a socket is found by its
/// inode, whatever its name).
fn bind_as(dir: &impl AsRawFd, name: &Path, path: &Path) -> io::Result<UnixListener> {
    // sun_path's 108 bytes, with the terminating zero.
    if path.as_os_str().len() < 108 {
        return UnixListener::bind(path);
    }
    let short = format!(".rbuild-relay-{}", std::process::id());
    let short_path = path.with_file_name(&short);
    let listener = UnixListener::bind(&short_path)?;
    // SAFETY: `dir` is an open directory descriptor; both names are single components.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir.as_raw_fd()) };
    if let Err(e) = rustix::fs::renameat(fd, &short, fd, name) {
        let _ = rustix::fs::unlinkat(fd, &short, rustix::fs::AtFlags::empty());
        return Err(e.into());
    }
    Ok(listener)
}

/// Copies both ways between `a` and `b` on two threads, each closing the other side's
/// writing half when its reading side ends.
fn relay(a: UnixStream, b: UnixStream) {
    let pair =
        |from: &UnixStream, to: &UnixStream| Some((from.try_clone().ok()?, to.try_clone().ok()?));
    let (Some((mut a_read, mut b_write)), Some((mut b_read, mut a_write))) =
        (pair(&a, &b), pair(&b, &a))
    else {
        return;
    };
    // Where no thread can be made, the connection is dropped (the client sees it
    // close) rather than the accept loop ending.
    let _ = std::thread::Builder::new().spawn(move || {
        let _ = io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::thread::Builder::new().spawn(move || {
        let _ = io::copy(&mut b_read, &mut a_write);
        let _ = a_write.shutdown(std::net::Shutdown::Write);
    });
}

impl Drop for SocketRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Shutting a listening socket down fails its pending accept (Linux), so the loop
        // wakes and sees the flag.
        // SAFETY: shutdown(2) on a descriptor this relay owns.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_connection_to_the_relay_reaches_the_socket_it_relays_to() {
        let dir = tempfile::tempdir().unwrap();
        relays_between(dir.path(), dir.path(), "relay.sock");
    }

    /// Neither path fits a socket address (108 bytes): a long TMPDIR for the agent's
    /// socket, a long name at the step's target.
    #[test]
    fn paths_longer_than_a_socket_address_still_relay() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(120));
        std::fs::create_dir(&deep).unwrap();
        relays_between(&deep, dir.path(), &"s".repeat(100));
    }

    fn relays_between(upstream_dir: &Path, relay_dir: &Path, relay_name: &str) {
        let upstream_path = upstream_dir.join("upstream.sock");
        // Bound through the directory, as the path may be too long itself.
        let upstream_fd = std::fs::File::open(upstream_dir).unwrap();
        let upstream = UnixListener::bind(
            Path::new("/proc/self/fd")
                .join(upstream_fd.as_raw_fd().to_string())
                .join("upstream.sock"),
        )
        .unwrap();
        let echo = std::thread::spawn(move || {
            let (mut conn, _) = upstream.accept().unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&buf).unwrap();
        });
        let fd = std::fs::File::open(relay_dir).unwrap();
        let relay = SocketRelay::listen_in(&fd, Path::new(relay_name), upstream_path).unwrap();
        let at = Path::new("/proc/self/fd")
            .join(fd.as_raw_fd().to_string())
            .join(relay_name);
        assert!(relay_dir.join(relay_name).exists(), "no socket at its name");
        let mut client = match UnixStream::connect(&at) {
            Ok(client) => client,
            // The name itself too long to connect by: through a short link.
            Err(_) => {
                let link = relay_dir.join("l");
                std::os::unix::fs::symlink(relay_name, &link).unwrap();
                UnixStream::connect(&link).unwrap()
            }
        };
        client.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
        drop(relay);
        let fresh = UnixStream::connect(&at);
        assert!(fresh.is_err(), "a dropped relay no longer listens");
    }
}
