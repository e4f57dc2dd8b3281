//! The UDP socket path: one `SO_REUSEPORT` socket per (port, shard), read with `recvmmsg`.
//!
//! Sockets are dual-stack (`[::]:port`, `IPV6_V6ONLY` off), so IPv4 exporters arrive as
//! v4-mapped addresses and are canonicalised. The `sk_reuseport` program picks the socket of
//! the shard [`super::shard_for`] names; the kernel reassembles fragments before that choice.

use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv6Addr, SocketAddr, SocketAddrV6},
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use aya::maps::ReusePortSockArray;
use socket2::{Domain, Protocol, Socket, Type};

use super::xdp::Kernel;

/// Largest UDP payload (IPv4: 65535 − 20 − 8).
pub const MAX_DATAGRAM: usize = 65_507;

/// Errors binding the socket path.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Creating, configuring or binding a socket failed.
    #[error("udp port {port}: {what}")]
    Io {
        /// The port.
        port: u16,
        /// The step that failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The steering program or map could not be used.
    #[error("sk_reuseport steering")]
    Steering(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The sockets of every port, grouped by shard: `groups[k]` holds shard `k`'s socket for
/// each port, in port order.
#[derive(Debug)]
pub struct ShardSockets {
    /// Per shard, one socket per port, with its port.
    pub groups: Vec<Vec<(OwnedFd, u16)>>,
    /// Socket inode numbers, for reading drops from `/proc/net/udp6`.
    pub inodes: Vec<u64>,
}

/// Binds `num_shards` sockets on each port and, with a loaded [`Kernel`], steers each group
/// with the `sk_reuseport` program.
///
/// # Errors
/// When a port cannot be bound (in use without `SO_REUSEPORT`, or privileged) or the
/// steering program cannot be attached.
pub fn bind(
    ports: &[u16],
    num_shards: usize,
    rcvbuf: usize,
    kernel: Option<&mut Kernel>,
) -> Result<ShardSockets, SocketError> {
    let mut groups: Vec<Vec<(OwnedFd, u16)>> = (0..num_shards).map(|_| Vec::new()).collect();
    let mut inodes = Vec::new();
    let mut per_port: Vec<Vec<Socket>> = Vec::new();
    for &port in ports {
        let mut sockets = Vec::with_capacity(num_shards);
        for _ in 0..num_shards {
            let io = |what| move |source| SocketError::Io { port, what, source };
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
                .map_err(io("socket"))?;
            s.set_only_v6(false).map_err(io("IPV6_V6ONLY"))?;
            s.set_reuse_port(true).map_err(io("SO_REUSEPORT"))?;
            s.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
            set_rcvbuf(&s, rcvbuf).map_err(io("SO_RCVBUF"))?;
            let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
            s.bind(&addr.into()).map_err(io("bind"))?;
            sockets.push(s);
        }
        per_port.push(sockets);
    }
    if let Some(kernel) = kernel {
        steer(kernel, &per_port)?;
    }
    for (sockets, &port) in per_port.into_iter().zip(ports) {
        for (k, s) in sockets.into_iter().enumerate() {
            inodes.push(inode_of(&s));
            groups[k].push((OwnedFd::from(s), port));
        }
    }
    Ok(ShardSockets { groups, inodes })
}

/// Puts every socket in the `SOCKETS` array at `port_slot * MAX_SHARDS + shard` and attaches
/// the program to each port's group (attaching through one socket covers the group).
fn steer(kernel: &mut Kernel, per_port: &[Vec<Socket>]) -> Result<(), SocketError> {
    let boxed = |e: Box<dyn std::error::Error + Send + Sync>| SocketError::Steering(e);
    {
        let map = kernel
            .ebpf_mut()
            .map_mut(flowguard_ebpf::SOCKETS_MAP)
            .ok_or_else(|| boxed("SOCKETS map missing".into()))?;
        let mut array = ReusePortSockArray::try_from(map).map_err(|e| boxed(e.into()))?;
        for (slot, sockets) in per_port.iter().enumerate() {
            for (k, s) in sockets.iter().enumerate() {
                let index = u32::try_from(slot * flowguard_ebpf::MAX_SHARDS + k)
                    .map_err(|e| boxed(e.into()))?;
                array
                    .set(index, &s.as_raw_fd(), 0)
                    .map_err(|e| boxed(e.into()))?;
            }
        }
    }
    let program = kernel.reuseport_program().map_err(|e| boxed(e.into()))?;
    for sockets in per_port {
        if let Some(first) = sockets.first() {
            program.attach(first.as_fd()).map_err(|e| boxed(e.into()))?;
        }
    }
    Ok(())
}

fn set_rcvbuf(s: &Socket, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SO_RCVBUFFORCE (root) lifts net.core.rmem_max; fall back to the capped SO_RCVBUF.
    // SAFETY: setsockopt reads an int we own.
    let ret = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const value).cast(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        s.set_recv_buffer_size(bytes)
    }
}

fn inode_of(s: &Socket) -> u64 {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the stat buffer for a valid fd.
    if unsafe { libc::fstat(s.as_raw_fd(), st.as_mut_ptr()) } == 0 {
        // SAFETY: fstat succeeded, so the buffer is initialised.
        unsafe { st.assume_init() }.st_ino
    } else {
        0
    }
}

/// Total kernel drops (receive buffer full) on the given sockets, from the `drops` column of
/// `/proc/net/udp6` (dual-stack sockets are listed there).
#[must_use]
pub fn kernel_drops(inodes: &[u64]) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp6") else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            let drops: u64 = cols.last()?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

/// Reusable `recvmmsg` buffers for one worker.
pub struct RecvBatch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_in6>,
    iovecs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    lens: Vec<usize>,
    filled: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.msgs.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers inside point into this struct's own heap buffers, which move with
// it; the batch is used by one thread at a time.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// A batch of `n` datagram buffers of [`MAX_DATAGRAM`] bytes.
    #[must_use]
    pub fn new(n: usize) -> Self {
        let mut batch = Self {
            bufs: vec![0u8; n * MAX_DATAGRAM],
            // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; n],
            iovecs: Vec::with_capacity(n),
            // SAFETY: mmsghdr is plain data; all-zero is valid.
            msgs: vec![unsafe { std::mem::zeroed() }; n],
            lens: vec![0; n],
            filled: 0,
        };
        let base = batch.bufs.as_mut_ptr();
        for i in 0..n {
            batch.iovecs.push(libc::iovec {
                // SAFETY: i * MAX_DATAGRAM is inside bufs.
                iov_base: unsafe { base.add(i * MAX_DATAGRAM) }.cast(),
                iov_len: MAX_DATAGRAM,
            });
        }
        batch
    }

    /// Receives up to a batch of datagrams without blocking. Returns how many arrived
    /// (0 when the socket is empty).
    ///
    /// # Errors
    /// Socket errors other than `EAGAIN`/`EINTR`.
    pub fn recv(&mut self, fd: &OwnedFd) -> io::Result<usize> {
        let n = self.msgs.len();
        for i in 0..n {
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_namelen =
                libc::socklen_t::try_from(size_of::<libc::sockaddr_in6>()).unwrap_or(28);
            hdr.msg_iov = &raw mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every mmsghdr points at buffers owned by self that outlive the call.
        let got = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                u32::try_from(n).unwrap_or(u32::MAX),
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        self.filled = usize::try_from(got).unwrap_or(0);
        for i in 0..self.filled {
            self.lens[i] = self.msgs[i].msg_len as usize;
        }
        Ok(self.filled)
    }

    /// The `i`th datagram of the last [`recv`](Self::recv): sender and payload.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if i >= self.filled {
            return None;
        }
        let sa = &self.addrs[i];
        let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
        let port = u16::from_be(sa.sin6_port);
        let addr = SocketAddr::new(ip.to_canonical(), port);
        let start = i * MAX_DATAGRAM;
        let payload = self
            .bufs
            .get(start..start + self.lens[i].min(MAX_DATAGRAM))?;
        Some((addr, payload))
    }
}
