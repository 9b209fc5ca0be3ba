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
    /// to `to`.
    pub(crate) fn listen_in(dir: &impl AsRawFd, name: &Path, to: PathBuf) -> io::Result<Self> {
        // The directory through its descriptor's name: short whatever its own path, and
        // nothing on the way is looked up again.
        let path = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        let listener = UnixListener::bind(&path)?;
        let handle = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
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
                let Ok(upstream) = UnixStream::connect(&to) else {
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
    std::thread::spawn(move || {
        let _ = io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
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
        let upstream_path = dir.path().join("upstream.sock");
        let upstream = UnixListener::bind(&upstream_path).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut conn, _) = upstream.accept().unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&buf).unwrap();
        });
        let fd = std::fs::File::open(dir.path()).unwrap();
        let relay = SocketRelay::listen_in(&fd, Path::new("relay.sock"), upstream_path).unwrap();
        let mut client = UnixStream::connect(dir.path().join("relay.sock")).unwrap();
        client.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
        drop(relay);
        assert!(
            UnixStream::connect(dir.path().join("relay.sock")).is_err(),
            "a dropped relay no longer listens"
        );
    }
}
