//! A network namespace for the simulated watch (Linux only; needs CAP_SYS_ADMIN).
//!
//! The virtual lab's watch is a separate process. It resolves names through the rig
//! and then connects to the gateway's per-host loopback addresses, but nothing stops
//! a misbehaving watch from connecting anywhere else directly. With a [`NetNs`] the
//! watch runs in a network namespace of its own that has nothing in it but a
//! loopback interface (brought up, addresses `127.0.0.0/8`), and the only sockets
//! listening there are the ones the rig created inside it: the gateway's listeners.
//!
//! How it works, without the `ip` command, veth pairs or routes:
//!
//! - [`NetNs::create`] unshares the network namespace on a short-lived thread of its
//!   own, keeps a file descriptor of `/proc/thread-self/ns/net`, and brings `lo` up
//!   with an `SIOCSIFFLAGS` ioctl on a socket created inside. The calling thread's
//!   namespace is never changed.
//! - [`NetNs::bind_tcp`] / [`NetNs::bind_udp`] enter the namespace on a short-lived
//!   thread (`setns`), bind, and hand the socket back. A socket belongs to the
//!   namespace it was created in for its whole life, whichever thread uses it later:
//!   the rig's async workers accept and serve those connections from the rig's own
//!   namespace, and the gateway's upstream connections, made by the rig's threads,
//!   leave from the rig's namespace as before.
//! - [`NetNs::enter_on_spawn`] makes a child process join the namespace between
//!   `fork` and `exec`.
//!
//! Lifetime: a network namespace exists while anything refers to it — the
//! [`NetNs`] file descriptor (closed by `Drop`), a `Command` prepared with
//! [`NetNs::enter_on_spawn`] (it holds a duplicate until it is dropped), a process
//! inside it, or a socket created inside it. Nothing is mounted and nothing is
//! written under `/var/run/netns`, so when the last of these is gone the kernel
//! removes the namespace; nothing has to be cleaned up after a crash.
//!
//! Not done here: no user namespace is ever created to obtain the capability (the
//! rig must already hold CAP_SYS_ADMIN, e.g. run as root); there is no IPv6 helper
//! (`::1` also exists in the namespace, but only IPv4 binding is offered); abstract
//! Unix sockets are per network namespace, so a child inside cannot reach abstract
//! sockets of the rig (path-bound Unix sockets, pseudo-terminals and files are
//! unaffected).

use std::fs::File;
use std::io;
use std::net::{SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::OnceLock;

/// The capability number of CAP_SYS_ADMIN (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;

/// A network namespace with only a loopback interface, held open by a file
/// descriptor. See the module documentation.
#[derive(Debug)]
pub struct NetNs {
    /// `/proc/thread-self/ns/net` of the new namespace, opened close-on-exec.
    fd: OwnedFd,
    /// The namespace's inode number, as shown in `net:[INODE]` links under `/proc`.
    inode: u64,
}

impl NetNs {
    /// Whether this process may create network namespaces: it must hold
    /// CAP_SYS_ADMIN already (root, or the capability granted), `/proc` must offer
    /// `/proc/thread-self/ns/net`, and a real `unshare(CLONE_NEWNET)` on a throw-away
    /// thread must succeed (a seccomp filter may refuse it even with the capability).
    /// Unprivileged user namespaces are deliberately not used to get the capability.
    /// The answer is computed once per process; `Err` carries a reason to show.
    pub fn available() -> Result<(), String> {
        static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
        ANSWER.get_or_init(probe).clone()
    }

    /// Create a new network namespace with `lo` up, on a short-lived dedicated
    /// thread; the calling thread's namespace is not changed.
    pub fn create() -> io::Result<NetNs> {
        on_thread(|| {
            // SAFETY: plain system call; it only affects this (dedicated) thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let file = open_own_netns()?;
            let inode = file.metadata()?.ino();
            loopback_up()?;
            Ok(NetNs {
                fd: OwnedFd::from(file),
                inode,
            })
        })
    }

    /// The namespace's inode number (the `N` of `net:[N]` in `/proc/PID/ns/net`),
    /// for logs and for checking what refers to the namespace.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Bind a TCP listener on `addr` inside the namespace. The listener is
    /// nonblocking, ready for `tokio::net::TcpListener::from_std`. std sets
    /// `SO_REUSEADDR` on it, as for any listener.
    pub fn bind_tcp(&self, addr: SocketAddrV4) -> io::Result<TcpListener> {
        self.run_inside(move || {
            let l = TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
    }

    /// Bind a UDP socket on `addr` inside the namespace. Like [`NetNs::bind_tcp`]
    /// the socket is nonblocking (for `tokio::net::UdpSocket::from_std`); call
    /// `set_nonblocking(false)` to use it with blocking calls.
    pub fn bind_udp(&self, addr: SocketAddrV4) -> io::Result<UdpSocket> {
        self.run_inside(move || {
            let s = UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
    }

    /// Make `cmd`'s child join the namespace before it executes its program
    /// (a `pre_exec` hook calling `setns`; it only makes that system call, nothing
    /// that allocates). The command keeps a duplicate descriptor of the namespace
    /// until the command is dropped. If that duplicate cannot be made (out of file
    /// descriptors), the hook makes `spawn` fail rather than start the child
    /// outside the namespace. For a `tokio::process::Command`, pass
    /// `cmd.as_std_mut()`.
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let hook_fd = self.fd.try_clone();
        let (fd, errno) = match hook_fd {
            Ok(fd) => (Some(fd), 0),
            Err(e) => (None, e.raw_os_error().unwrap_or(libc::EMFILE)),
        };
        // SAFETY: between fork and exec the hook only calls setns(2) and builds
        // io::Error values from an errno, which does not allocate.
        unsafe {
            cmd.pre_exec(move || match &fd {
                Some(fd) => {
                    if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                }
                None => Err(io::Error::from_raw_os_error(errno)),
            });
        }
    }

    /// Run `f` on a short-lived thread that has joined the namespace.
    fn run_inside<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let fd = self.fd.as_raw_fd();
        on_thread(move || {
            // SAFETY: `fd` stays open for the duration (borrowed from `self`, and
            // `on_thread` joins before returning); setns only affects this thread.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
    }
}

/// Run `f` on a new thread and wait for it. The thread ends with `f`, so whatever
/// namespace `f` moved it into is left with it.
fn on_thread<T: Send>(f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(s, f)?;
        handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

/// Open the calling thread's network namespace (close-on-exec).
fn open_own_netns() -> io::Result<File> {
    match File::open("/proc/thread-self/ns/net") {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Kernels before 3.17 have no /proc/thread-self.
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            File::open(format!("/proc/self/task/{tid}/ns/net"))
        }
        Err(e) => Err(e),
    }
}

/// Bring `lo` up in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain system call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write an ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the `CapEff:` line of a `/proc/PID/status` text has CAP_SYS_ADMIN;
/// `None` if there is no such line or it does not parse.
fn has_cap_sys_admin(status: &str) -> Option<bool> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let mask = u64::from_str_radix(line.trim(), 16).ok()?;
    Some(mask & (1u64 << CAP_SYS_ADMIN) != 0)
}

fn probe() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status ({e}); /proc must be mounted"))?;
    match has_cap_sys_admin(&status) {
        Some(true) => {}
        Some(false) => {
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            return Err(format!(
                "creating a network namespace needs CAP_SYS_ADMIN, which this process \
                 (effective uid {euid}) does not have; run the rig as root with its \
                 full capability set (user namespaces are not used to obtain it)"
            ));
        }
        None => return Err("no readable CapEff line in /proc/self/status".into()),
    }
    if !std::path::Path::new("/proc/thread-self/ns/net").exists()
        && !std::path::Path::new("/proc/self/ns/net").exists()
    {
        return Err("/proc/self/ns/net is missing: the kernel has no network namespaces".into());
    }
    // The capability is there; a seccomp filter (a container's default profile,
    // for one) may still refuse. Try for real on a throw-away thread: the
    // namespace goes away with the thread.
    on_thread(|| {
        // SAFETY: plain system call on this dedicated thread only.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })
    .map_err(|e| format!("unshare(CLONE_NEWNET) is refused here despite CAP_SYS_ADMIN: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_sys_admin_is_read_from_the_effective_set() {
        let with = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(has_cap_sys_admin(with), Some(true));
        // Everything but bit 21.
        let without = format!("CapEff:\t{:016x}\n", 0x1ff_ffff_ffffu64 & !(1 << 21));
        assert_eq!(has_cap_sys_admin(&without), Some(false));
        // Another set having it does not count.
        let other = "CapPrm:\t000001ffffffffff\nCapEff:\t0000000000000000\n";
        assert_eq!(has_cap_sys_admin(other), Some(false));
        assert_eq!(has_cap_sys_admin("CapEff:\tnot-hex\n"), None);
        assert_eq!(has_cap_sys_admin("Name:\tx\n"), None);
    }
}
