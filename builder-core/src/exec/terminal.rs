//! A pseudo-terminal for a container's process (`rbuild run -t`).
//!
//! The terminal is made inside the container, as runc makes its console: after the
//! root is pivoted, the init opens `/dev/ptmx` of the container's own `devpts`
//! instance, unlocks it, opens the peer (`TIOCGPTPEER`), sets its window size, makes
//! the peer its standard input, output and error and its controlling terminal
//! (`TIOCSCTTY`, the init leads a session of its own) and hands the master side to
//! rbuild over a unix socket (`SCM_RIGHTS`). So the process sees `/dev/pts/0` of its
//! own instance (`tty` prints it) and no host terminal is reachable from inside.
//!
//! rbuild's side ([`Terminal`]) keeps the master while the process runs: its output is
//! read from the master, the caller's standard input (with `-i`) is copied to it, and
//! [`Terminal::resize`] sets its window size (on the caller's `SIGWINCH`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl Default for WindowSize {
    /// 24 x 80, what a terminal of unknown size is taken to be.
    fn default() -> Self {
        WindowSize { rows: 24, cols: 80 }
    }
}

impl WindowSize {
    /// The window size of the terminal `fd` refers to, if it is one.
    pub fn of(fd: impl AsFd) -> Option<WindowSize> {
        // SAFETY: `winsize` is plain old data, filled by the kernel.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a `winsize` through the pointer.
        let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(WindowSize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        })
    }

    fn raw(self) -> libc::winsize {
        libc::winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

/// Asks for a terminal for a container's process, and resizes it while it runs. Clones
/// share one state: keep one to call [`resize`](Self::resize) from a signal thread.
#[derive(Debug, Clone, Default)]
pub struct Terminal {
    state: Arc<Mutex<TerminalState>>,
}

#[derive(Debug, Default)]
struct TerminalState {
    size: WindowSize,
    /// The master side while the process runs.
    master: Option<OwnedFd>,
}

impl Terminal {
    /// A terminal that starts at `size`.
    pub fn new(size: WindowSize) -> Self {
        Terminal {
            state: Arc::new(Mutex::new(TerminalState { size, master: None })),
        }
    }

    /// The size the terminal has (or starts with).
    pub fn size(&self) -> WindowSize {
        self.lock().size
    }

    /// Changes the window size; the process gets `SIGWINCH` from its terminal.
    pub fn resize(&self, size: WindowSize) {
        let mut state = self.lock();
        state.size = size;
        if let Some(master) = &state.master {
            // A failure leaves the old size: the process may already be gone.
            // SAFETY: TIOCSWINSZ reads a `winsize` through the pointer.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size.raw()) };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TerminalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps (a duplicate of) `master` for resizes, and applies a size asked for while
    /// the process started.
    pub(crate) fn attach(&self, master: &OwnedFd) {
        let size = {
            let mut state = self.lock();
            state.master = master.try_clone().ok();
            state.size
        };
        self.resize(size);
    }

    /// Forgets the master once the process ended.
    pub(crate) fn detach(&self) {
        self.lock().master = None;
    }
}

/// The socket pair the init hands the terminal's master over: rbuild keeps `parent`,
/// the init writes to `child` (its number is in the plan).
pub(crate) struct ConsoleSocket {
    pub parent: OwnedFd,
    pub child: OwnedFd,
}

impl ConsoleSocket {
    pub fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here only.
        Ok(unsafe {
            ConsoleSocket {
                parent: OwnedFd::from_raw_fd(fds[0]),
                child: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }
}

/// The room for one descriptor's control message (`CMSG_SPACE(sizeof(int))`, 8-aligned).
#[repr(C, align(8))]
struct FdMessage([u8; 32]);

/// In the init, after the root is pivoted: makes the terminal and hands its master to
/// rbuild on `socket` (see the module documentation). Async-signal-safe: system calls on
/// stack data only.
pub(super) fn open_in_init(socket: RawFd, size: WindowSize, uid: u32, gid: u32) -> Result<(), i32> {
    use super::errno::{check, errno};
    // SAFETY: every libc call below takes constants, descriptors this process opened,
    // or pointers to live stack data.
    unsafe {
        let master = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if master < 0 {
            return Err(errno());
        }
        let unlock: libc::c_int = 0;
        check(libc::ioctl(master, libc::TIOCSPTLCK, &unlock))?;
        let peer = libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        if peer < 0 {
            return Err(errno());
        }
        // The process's own terminal, as docker gives it; where the id cannot be set
        // (an unmapped id) root keeps it, and the open descriptors still work.
        libc::fchown(peer, uid, gid);
        check(libc::ioctl(peer, libc::TIOCSWINSZ, &size.raw()))?;
        for fd in 0..3 {
            if libc::dup2(peer, fd) < 0 {
                return Err(errno());
            }
        }
        if peer > 2 {
            libc::close(peer);
        }
        check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
        // Hand the master over.
        let sent = send_fd(socket, master);
        libc::close(master);
        libc::close(socket);
        sent
    }
}

/// Sends `fd` on the socket `socket`: one byte of data carrying the descriptor.
/// Async-signal-safe: system calls on stack data only.
pub(super) fn send_fd(socket: RawFd, fd: RawFd) -> Result<(), i32> {
    send_fd_with(socket, fd, &[0])
}

/// Sends `fd` on the socket `socket` with `data` (not empty) as the message's bytes.
/// Async-signal-safe: system calls on data the caller owns.
pub(super) fn send_fd_with(socket: RawFd, fd: RawFd, data: &[u8]) -> Result<(), i32> {
    use super::errno::errno;
    // SAFETY: `msghdr` is plain old data; every pointer set in it is to live data of the
    // sizes given (`data` is only read by sendmsg).
    unsafe {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let mut control = FdMessage([0; 32]);
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        if libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) != data.len() as isize {
            return Err(errno());
        }
    }
    Ok(())
}

/// Receives the descriptor the init sends with [`send_fd`] (the terminal's master, a
/// seccomp listener); `None` when the init ended (or failed its set-up) first.
pub(crate) fn receive_fd(socket: &OwnedFd) -> Option<OwnedFd> {
    receive_fd_with(socket, &mut [0u8; 1])
}

/// [`receive_fd`] of a message sent by [`send_fd_with`]: its bytes go into `data`.
pub(crate) fn receive_fd_with(socket: &OwnedFd, data: &mut [u8]) -> Option<OwnedFd> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = FdMessage([0; 32]);
    // SAFETY: `msghdr` is plain old data; every pointer set in it is to live stack data
    // of the sizes given; the received descriptor is taken into an `OwnedFd` once.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;
        loop {
            let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return None;
            }
            break;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
        Some(OwnedFd::from_raw_fd(fd))
    }
}

/// Copies rbuild's standard input to the terminal's master until input ends or the copy
/// is stopped ([`InputCopy::stop`]).
///
/// The master is written without blocking: a command that never reads its terminal
/// fills it (a big paste), and a blocked `write(2)` would outlive the command and keep
/// rbuild from ending. So the master is made non-blocking (the output reader waits for
/// it with `poll`) and the copy waits for room, or for the stop, in `poll`.
pub(crate) struct InputCopy {
    wake: OwnedFd,
    thread: JoinHandle<()>,
}

impl InputCopy {
    pub fn start(master: &OwnedFd) -> io::Result<Self> {
        let (wake_read, wake) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let to = master.try_clone()?;
        set_nonblocking(&to)?;
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Bytes read from standard input and not yet taken by the terminal.
            let (mut start, mut end) = (0, 0);
            loop {
                let pending = start < end;
                let mut fds = [
                    libc::pollfd {
                        fd: if pending { to.as_raw_fd() } else { 0 },
                        events: if pending { libc::POLLOUT } else { libc::POLLIN },
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: wake_read.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: poll reads and writes the two `pollfd`s.
                let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if r < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if fds[1].revents != 0 {
                    return;
                }
                if fds[0].revents == 0 {
                    continue;
                }
                if !pending {
                    // Unbuffered, past std's stdin: nothing else of rbuild reads it.
                    match read_fd0(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => (start, end) = (0, n),
                    }
                }
                match rustix::io::write(&to, &buf[start..end]) {
                    Ok(n) => start += n,
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    // EIO: the command's side of the terminal is closed.
                    Err(_) => return,
                }
            }
        });
        Ok(InputCopy { wake, thread })
    }

    pub fn stop(self) {
        let _ = rustix::io::write(&self.wake, b"x");
        let _ = self.thread.join();
    }
}

/// Sets `O_NONBLOCK` on `fd`'s open file (shared by its duplicates).
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

fn read_fd0(buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The terminal's master as a reader of the process's output: reading it ends with
/// `EIO` once the process and everything in its namespace are gone. The master may be
/// non-blocking ([`InputCopy`]): the reader then waits for output in `poll`.
pub(crate) fn output_reader(master: &OwnedFd) -> io::Result<impl Read + Send + 'static> {
    Ok(MasterReader(File::from(master.try_clone()?)))
}

/// Blocking reads of a terminal master that may be non-blocking.
struct MasterReader(File);

impl Read for MasterReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fd = libc::pollfd {
                        fd: self.0.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: poll reads and writes the one `pollfd`. Interrupted or
                    // not, the read is tried again.
                    unsafe { libc::poll(&mut fd, 1, -1) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}
