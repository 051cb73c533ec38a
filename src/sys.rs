//! The thin layer between the program and the kernel: every `unsafe` block lives here.
//!
//! The binary does not link the standard library (see `main.rs`), so this module provides the
//! little of it the program needs: an error number, an owned fd, files and directories read as
//! bytes, paths as byte strings, a monotonic clock, writing to stdout/stderr, and the process
//! start-up std would otherwise do. Each wrapper makes one `unsafe` call, turns `-1` into an
//! [`Errno`] and adds nothing else, so the rest of the program stays safe code.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, CStr};
use core::fmt;
use core::mem::MaybeUninit;
use core::ops::Add;
use core::time::Duration;

/// An error number from a failed syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The error number the last failed libc call left in `errno`.
    pub fn last() -> Errno {
        // SAFETY: __errno_location returns a valid pointer to this thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }
}

/// The C library's text and the number, as std's `io::Error` prints it (`No such file or
/// directory (os error 2)`), so log lines read the same as before the move off std.
impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: strerror returns a pointer to a NUL-terminated static string for any number
        // (musl and glibc both return "Unknown error" text for unknown ones, never null); we
        // are single-threaded, so nothing overwrites its buffer while we copy it out.
        let text = unsafe { CStr::from_ptr(libc::strerror(self.0)) };
        write!(
            f,
            "{} (os error {})",
            String::from_utf8_lossy(text.to_bytes()),
            self.0
        )
    }
}

/// An error: a syscall's [`Errno`], or a check of our own that failed with a fixed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The kernel said no.
    Os(Errno),
    /// We said no, before or after asking the kernel.
    Invalid(&'static str),
}

impl Error {
    /// The error number, if the kernel reported this error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os(e) => Some(e.0),
            Error::Invalid(_) => None,
        }
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Error {
        Error::Os(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os(e) => e.fmt(f),
            Error::Invalid(msg) => f.write_str(msg),
        }
    }
}

/// A syscall's result.
pub type Result<T> = core::result::Result<T, Errno>;

fn check(ret: c_int) -> Result<c_int> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// [`check`] for calls returning a byte count (read, write, getdents64).
fn check_len(ret: isize) -> Result<usize> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as usize)
    }
}

/// An open file descriptor, closed when dropped.
#[derive(Debug)]
pub struct Fd(c_int);

impl Fd {
    /// The number, for poll and friends; it stays owned by `self`.
    pub fn raw(&self) -> c_int {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this fd and nobody uses it after the drop. close(2) errors are
        // ignored: the fd is released either way and there is nothing to retry.
        unsafe { libc::close(self.0) };
    }
}

fn own(fd: c_int) -> Result<Fd> {
    check(fd).map(Fd)
}

// ---- Paths: byte strings, compared the way std::path::Path compares them. ----

/// Calls `f` with `path` as a C string: on the stack when short, else on the heap.
/// A path holding a NUL byte cannot name a file: EINVAL, as the kernel would say.
fn with_cpath<T>(path: &[u8], f: impl FnOnce(&CStr) -> Result<T>) -> Result<T> {
    let mut stack = [0u8; 256];
    if path.len() < stack.len() {
        stack[..path.len()].copy_from_slice(path);
        let c =
            CStr::from_bytes_with_nul(&stack[..=path.len()]).map_err(|_| Errno(libc::EINVAL))?;
        return f(c);
    }
    let mut heap = Vec::with_capacity(path.len() + 1);
    heap.extend_from_slice(path);
    heap.push(0);
    let c = CStr::from_bytes_with_nul(&heap).map_err(|_| Errno(libc::EINVAL))?;
    f(c)
}

/// `base/name`; an absolute `name` replaces `base`, as `Path::join` does (a symlink target
/// read with [`readlink`] may be absolute).
pub fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    if name.first() == Some(&b'/') || base.is_empty() {
        return name.to_vec();
    }
    let mut out = Vec::with_capacity(base.len() + 1 + name.len());
    out.extend_from_slice(base);
    if base.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The components of a path as `Path::components` sees them: a leading `/` is one component,
/// empty and `.` components are skipped except a leading `.` of a relative path.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let root = path.first() == Some(&b'/');
    let lead_dot = !root && (path == b"." || path.starts_with(b"./"));
    let root_part: Option<&[u8]> = if root {
        Some(b"/")
    } else if lead_dot {
        Some(b".")
    } else {
        None
    };
    root_part.into_iter().chain(
        path.split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b"."),
    )
}

/// Whether `path` is `base` or below it, compared by whole components like
/// `Path::starts_with`: `/a/b` starts with `/a` and `/a/`, `/ab` does not start with `/a`.
pub fn starts_with(path: &[u8], base: &[u8]) -> bool {
    let mut p = components(path);
    components(base).all(|c| p.next() == Some(c))
}

/// Whether two paths name the same components (`/tmp` and `/tmp/` are equal), like `Path`'s `==`.
pub fn same_path(a: &[u8], b: &[u8]) -> bool {
    components(a).eq(components(b))
}

/// The last component unless it is `..` (or there is none), like `Path::file_name`.
pub fn file_name(path: &[u8]) -> Option<&[u8]> {
    components(path)
        .last()
        .filter(|c| *c != b".." && *c != b"." && *c != b"/")
}

/// The path without its last component, like `Path::parent`: `/a/b` → `/a`, `/a` → `/`,
/// `a` → the empty path, `/` and the empty path → `None`.
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    let trimmed = trim_trailing_slashes(path);
    if trimmed.is_empty() || trimmed == b"/" {
        return None;
    }
    match trimmed.iter().rposition(|&b| b == b'/') {
        None => Some(&[]),
        Some(i) => {
            let p = trim_trailing_slashes(&trimmed[..i]);
            Some(if p.is_empty() { b"/" } else { p })
        }
    }
}

fn trim_trailing_slashes(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

/// A path for a log line: invalid UTF-8 is replaced, as `Path::display` does.
pub fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

// ---- Files and directories. ----

/// Opens `path` read-only, close-on-exec, with `extra` flags (e.g. `O_NONBLOCK`, `O_DIRECTORY`).
pub fn open(path: &[u8], extra: c_int) -> Result<Fd> {
    with_cpath(path, |p| open_c(libc::AT_FDCWD, p, extra))
}

/// Like [`open`], with a relative `path` looked up from the directory `dir` (openat(2)): the
/// kernel walks one component instead of the whole path again.
pub fn open_at(dir: &Fd, path: &[u8], extra: c_int) -> Result<Fd> {
    with_cpath(path, |p| open_c(dir.0, p, extra))
}

/// openat(2) rather than musl's open(3): for O_CLOEXEC musl's open adds an
/// `fcntl(F_SETFD, FD_CLOEXEC)` for kernels older than 2.6.23, one more syscall per file.
fn open_c(dir: c_int, path: &CStr, extra: c_int) -> Result<Fd> {
    // SAFETY: path is a NUL-terminated path that outlives the call; dir is AT_FDCWD or an fd
    // the caller owns.
    own(unsafe { libc::openat(dir, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | extra) })
}

/// One read(2); EINTR is returned to the caller, which decides whether to retry.
pub fn read(fd: &Fd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    check_len(unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), buf.len()) })
}

/// Reads until end of file, appending to `buf`; retries on EINTR.
pub fn read_to_end(fd: &Fd, buf: &mut Vec<u8>) -> Result<()> {
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity().max(512));
        }
        let spare = buf.spare_capacity_mut();
        // SAFETY: spare is valid for writes of spare.len() bytes; read never reads from it.
        let n = match check_len(unsafe { libc::read(fd.0, spare.as_mut_ptr().cast(), spare.len()) })
        {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: the kernel initialised the first n bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
    }
}

/// The whole content of a (small) file such as `/proc/PID/stat`.
pub fn read_file(path: &[u8]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_file_into(path, &mut buf)?;
    Ok(buf)
}

/// Like [`read_file`], reusing `buf` (cleared first).
pub fn read_file_into(path: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    read_to_end(&open(path, 0)?, buf)
}

/// The content of a file that must be UTF-8 text, like `fs::read_to_string`; EINVAL if not.
pub fn read_text(path: &[u8]) -> Result<String> {
    String::from_utf8(read_file(path)?).map_err(|_| Errno(libc::EINVAL))
}

/// What `stat`/`lstat` say about a path.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    mode: u32,
    /// Device of the filesystem holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl Stat {
    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }
    /// A symbolic link (only ever seen through [`lstat`]).
    pub fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }
}

fn stat_at(dirfd: c_int, path: &CStr, flags: c_int) -> Result<Stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated and st is valid for writes of one struct stat.
    check(unsafe { libc::fstatat(dirfd, path.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded, so it filled st.
    let st = unsafe { st.assume_init() };
    Ok(Stat {
        mode: st.st_mode,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// stat(2): follows symlinks.
pub fn stat(path: &[u8]) -> Result<Stat> {
    with_cpath(path, |p| stat_at(libc::AT_FDCWD, p, 0))
}

/// lstat(2): describes a symlink itself.
pub fn lstat(path: &[u8]) -> Result<Stat> {
    with_cpath(path, |p| {
        stat_at(libc::AT_FDCWD, p, libc::AT_SYMLINK_NOFOLLOW)
    })
}

/// Whether `path` is a directory (following symlinks); false if it cannot be stat'ed.
pub fn is_dir(path: &[u8]) -> bool {
    stat(path).is_ok_and(|s| s.is_dir())
}

/// The target of a symlink, as stored.
pub fn readlink(path: &[u8]) -> Result<Vec<u8>> {
    with_cpath(path, |p| {
        let mut buf = [0u8; libc::PATH_MAX as usize];
        // SAFETY: p is NUL-terminated; buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::readlink(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(Errno::last());
        }
        // n == buf.len() would mean the target may be cut: longer than PATH_MAX, unusable.
        match buf.get(..n as usize) {
            Some(t) if (n as usize) < buf.len() => Ok(t.to_vec()),
            _ => Err(Errno(libc::ENAMETOOLONG)),
        }
    })
}

/// The absolute path with every symlink resolved, like `fs::canonicalize`.
pub fn realpath(path: &[u8]) -> Result<Vec<u8>> {
    with_cpath(path, |p| {
        let mut buf = [0 as c_char; libc::PATH_MAX as usize];
        // SAFETY: p is NUL-terminated; buf holds PATH_MAX bytes, as realpath(3) requires.
        let r = unsafe { libc::realpath(p.as_ptr(), buf.as_mut_ptr()) };
        if r.is_null() {
            return Err(Errno::last());
        }
        // SAFETY: on success realpath wrote a NUL-terminated path into buf.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes().to_vec())
    })
}

/// One entry of a directory.
pub struct DirEntry {
    /// Its name (never `.` or `..`).
    pub name: Vec<u8>,
    /// Whether it is a directory itself; a symlink to a directory is not.
    pub is_dir: bool,
}

/// What an entry is, without following a symlink (getdents64's `d_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A fifo, socket or device.
    Special,
}

/// The entries of a directory, read with getdents64(2), minus `.` and `..`.
///
/// A read error after opening ends the listing, like `read_dir(..).flatten()` did.
pub struct ReadDir {
    fd: Fd,
    // Inline rather than on the heap: musl's allocator maps and unmaps a fresh page group for
    // a buffer this size on every listing (two per reload, measured with strace -c).
    buf: [u8; DIR_BUF],
    pos: usize,
    end: usize,
}

/// getdents64 buffer: ~170 `/proc` entries per call.
const DIR_BUF: usize = 4096;

/// Lists `path`.
pub fn read_dir(path: &[u8]) -> Result<ReadDir> {
    Ok(ReadDir {
        fd: open(path, libc::O_DIRECTORY)?,
        buf: [0; DIR_BUF],
        pos: 0,
        end: 0,
    })
}

/// Offsets in `struct linux_dirent64` (getdents64(2)): u64 ino, i64 off, u16 reclen, u8 type.
const D_RECLEN: usize = 16;
const D_TYPE: usize = 18;
const D_NAME: usize = 19;

impl ReadDir {
    /// The open directory, for [`open_at`] on its entries.
    pub fn fd(&self) -> &Fd {
        &self.fd
    }

    /// The next entry's name and kind, borrowed from the listing buffer: unlike the iterator,
    /// no allocation per entry, which matters for `/proc` with thousands of processes.
    pub fn next_entry(&mut self) -> Option<(&[u8], Kind)> {
        let (start, len, kind) = self.advance()?;
        Some((&self.buf[start..start + len], kind))
    }

    /// Moves to the next entry: where its name sits in `buf`, how long it is, and its kind.
    fn advance(&mut self) -> Option<(usize, usize, Kind)> {
        loop {
            if self.pos >= self.end {
                // SAFETY: buf is valid for writes of buf.len() bytes; the fd is a directory.
                let ret = unsafe {
                    libc::syscall(
                        libc::SYS_getdents64,
                        self.fd.0,
                        self.buf.as_mut_ptr(),
                        self.buf.len(),
                    )
                };
                // A read error after opening ends the listing (see the type's doc).
                let n = match check_len(ret as isize) {
                    Ok(0) => return None,
                    Ok(n) => n,
                    Err(Errno(libc::EINTR)) => continue,
                    Err(_) => return None,
                };
                self.pos = 0;
                self.end = n.min(self.buf.len());
            }
            let start = self.pos;
            let rec = self.buf.get(start..self.end)?;
            let reclen = usize::from(u16::from_ne_bytes([
                *rec.get(D_RECLEN)?,
                *rec.get(D_RECLEN + 1)?,
            ]));
            if reclen <= D_NAME || reclen > rec.len() {
                return None;
            }
            self.pos += reclen;
            let d_type = rec[D_TYPE];
            let name = &rec[D_NAME..reclen];
            // d_name is NUL-terminated inside the record; a record without one is cut short.
            let len = name.iter().position(|&b| b == 0)?;
            let name = &name[..len];
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match d_type {
                libc::DT_DIR => Kind::Dir,
                libc::DT_REG => Kind::File,
                libc::DT_LNK => Kind::Symlink,
                // Some filesystems do not fill d_type: ask the inode, without following
                // symlinks. The name is NUL-terminated in place, so no copy is needed.
                libc::DT_UNKNOWN => {
                    let c = CStr::from_bytes_with_nul(&rec[D_NAME..=D_NAME + len]).ok();
                    match c.map(|c| stat_at(self.fd.0, c, libc::AT_SYMLINK_NOFOLLOW)) {
                        Some(Ok(s)) if s.is_dir() => Kind::Dir,
                        Some(Ok(s)) if s.is_file() => Kind::File,
                        Some(Ok(s)) if s.is_symlink() => Kind::Symlink,
                        Some(Ok(_)) => Kind::Special,
                        // Gone since the listing: whoever follows the name finds out.
                        _ => Kind::Symlink,
                    }
                }
                _ => Kind::Special,
            };
            return Some((start + D_NAME, len, kind));
        }
    }
}

impl Iterator for ReadDir {
    type Item = DirEntry;

    fn next(&mut self) -> Option<DirEntry> {
        let (name, kind) = self.next_entry()?;
        Some(DirEntry {
            name: name.to_vec(),
            is_dir: kind == Kind::Dir,
        })
    }
}

// ---- Time. ----

/// A point on the monotonic clock, in nanoseconds; like `std::time::Instant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(u64);

impl Instant {
    /// Now, from CLOCK_MONOTONIC (which does not jump when the wall clock is set).
    pub fn now() -> Instant {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write to. CLOCK_MONOTONIC cannot fail on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Instant((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The time since `self`.
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

// ---- Process start-up and output. ----

/// An environment variable's value, as bytes; `None` if unset.
pub fn getenv(name: &str) -> Option<Vec<u8>> {
    with_cpath(name.as_bytes(), |n| {
        // SAFETY: n is NUL-terminated; getenv returns null or a NUL-terminated string that
        // stays valid while nobody changes the environment (nobody does).
        let v = unsafe { libc::getenv(n.as_ptr()) };
        if v.is_null() {
            return Err(Errno(libc::ENOENT));
        }
        // SAFETY: non-null, so a NUL-terminated string owned by the environment.
        Ok(unsafe { CStr::from_ptr(v) }.to_bytes().to_vec())
    })
    .ok()
}

/// Our pid.
pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Writes all of `bytes` to `fd` (1 stdout, 2 stderr), retrying on EINTR and short writes.
pub fn write_all(fd: c_int, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        // SAFETY: bytes is valid for reads of bytes.len() bytes.
        let n = match check_len(unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }) {
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => n,
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        };
        bytes = bytes.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// Writes text to stdout; an error is ignored, there is nowhere to report it.
pub fn print(s: &str) {
    let _ = write_all(1, s.as_bytes());
}

// ---- Signals. ----

/// A set of signals, as used by `sigprocmask` and `signalfd`.
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// A set holding exactly `signals`.
    pub fn of(signals: &[c_int]) -> SigSet {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset only fails for invalid
        // signal numbers, and callers pass libc's constants.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &s in signals {
                libc::sigaddset(set.as_mut_ptr(), s);
            }
            SigSet(set.assume_init())
        }
    }
}

/// Blocks `set` for this (single-threaded) process so the signals queue for a signalfd instead
/// of running their default action.
pub fn block_signals(set: &SigSet) -> Result<()> {
    // SAFETY: both pointers are valid for the call; a null old-set pointer is allowed.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set.0, core::ptr::null_mut()) }).map(drop)
}

/// Creates a non-blocking, close-on-exec signalfd that reads the (blocked) signals in `set`.
pub fn signalfd(set: &SigSet) -> Result<Fd> {
    // SAFETY: -1 asks for a new fd; the set pointer is valid for the call.
    own(unsafe { libc::signalfd(-1, &set.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })
}

/// Reads one pending signal from a signalfd; `Ok(None)` when none is pending.
pub fn read_signalfd(fd: &Fd) -> Result<Option<c_int>> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = core::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the buffer is exactly one signalfd_siginfo, the only size signalfd reads accept.
    let n = unsafe { libc::read(fd.0, info.as_mut_ptr().cast(), size) };
    if n == -1 {
        let e = Errno::last();
        return match e.0 {
            libc::EAGAIN | libc::EINTR => Ok(None),
            _ => Err(e),
        };
    }
    if n as usize != size {
        return Ok(None);
    }
    // SAFETY: the kernel filled all `size` bytes.
    Ok(Some(unsafe { info.assume_init() }.ssi_signo as c_int))
}

/// Which of the polled fds are readable.
pub struct Ready {
    /// `fds[i]` had POLLIN (or an error condition worth a read to surface it).
    pub readable: [bool; 2],
}

/// Waits until one of two fds is readable or `timeout` passes (`None`: wait forever).
///
/// `ppoll` rather than `poll` for its nanosecond timeout: the debounce may be a few ms and
/// rounding it to whole ms in the wrong direction would wake us early for nothing.
/// EINTR is reported as "nothing ready" so the caller simply loops.
pub fn poll2(fds: [c_int; 2], timeout: Option<Duration>) -> Result<Ready> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: d.subsec_nanos() as _,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: pfds is a valid array of 2 pollfd; ts_ptr is null or points to a live timespec;
    // a null sigmask keeps the current mask.
    let n = unsafe { libc::ppoll(pfds.as_mut_ptr(), 2, ts_ptr, core::ptr::null()) };
    if n == -1 {
        let e = Errno::last();
        if e.0 == libc::EINTR {
            return Ok(Ready {
                readable: [false; 2],
            });
        }
        return Err(e);
    }
    let hit = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    Ok(Ready {
        readable: [hit(&pfds[0]), hit(&pfds[1])],
    })
}

/// Opens a pidfd for `pid`: a handle that keeps naming the same process even if the pid is
/// reused after it exits (pidfd_open(2), Linux 5.3).
pub fn pidfd_open(pid: libc::pid_t) -> Result<Fd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    own(fd as c_int)
}

/// Sends `sig` to the process behind `pidfd` (pidfd_send_signal(2), Linux 5.1).
pub fn pidfd_send_signal(pidfd: &Fd, sig: c_int) -> Result<()> {
    // SAFETY: a valid pidfd, a signal number, a null siginfo (kill(2) semantics) and flags 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.0,
            sig,
            core::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(ret as c_int).map(drop)
}

/// Sends `sig` to one process with kill(2); only for kernels without pidfds.
pub fn kill(pid: libc::pid_t, sig: c_int) -> Result<()> {
    // Callers must never reach here with pid <= 0 (0 and negatives broadcast to process groups).
    debug_assert!(pid > 0);
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

// ---- inotify(7). ----

/// A new non-blocking, close-on-exec inotify instance.
pub fn inotify_init() -> Result<Fd> {
    // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
    own(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })
}

/// Watches `path` for `mask`; the watch descriptor. The kernel returns the existing
/// descriptor when the inode is already watched (and replaces its mask).
pub fn inotify_add_watch(fd: &Fd, path: &[u8], mask: u32) -> Result<i32> {
    // SAFETY: a valid inotify fd and a NUL-terminated path that outlives the call.
    with_cpath(path, |p| {
        check(unsafe { libc::inotify_add_watch(fd.0, p.as_ptr(), mask) })
    })
}

/// Removes a watch; EINVAL when the kernel already dropped it (after IN_IGNORED).
pub fn inotify_rm_watch(fd: &Fd, wd: i32) -> Result<()> {
    // SAFETY: plain integers.
    check(unsafe { libc::inotify_rm_watch(fd.0, wd) }).map(drop)
}

// ---- The runtime std provided: entry point, allocator, panics. Not in unit tests (std). ----

/// The entry point musl's C runtime (crt1) calls, in place of std's `fn main`.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    init_process();
    let mut args = Vec::new();
    for i in 1..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: the C runtime passes argc valid pointers to NUL-terminated strings in argv.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
        args.push(arg.to_bytes().to_vec());
    }
    crate::run(args)
}

/// What std's runtime did before `main` and the program relies on: stdin, stdout and stderr
/// are open (on /dev/null if the parent closed them), so the first fd we open (inotify) can
/// never become "stderr" and swallow our log lines; and SIGPIPE is ignored, so a closed log
/// pipe fails our writes with EPIPE instead of killing us.
#[cfg(not(test))]
fn init_process() {
    let mut pfds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: pfds is a valid array of 3 pollfd; a zero timeout only checks the fds.
    if unsafe { libc::poll(pfds.as_mut_ptr(), 3, 0) } != -1 {
        for p in pfds {
            if p.revents & libc::POLLNVAL != 0 {
                // SAFETY: a static NUL-terminated path. The lowest free fd is p.fd, as every
                // lower one is open. A failure leaves the fd closed, as std did with no /dev.
                unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            }
        }
    }
    // SAFETY: setting a disposition to SIG_IGN has no handler to be unsafe about.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The C library's malloc, for `alloc`'s `Vec`, `String` and `BTreeMap`.
#[cfg(not(test))]
struct Malloc;

/// malloc guarantees alignment for any fundamental type: 16 bytes on x86_64 and aarch64.
#[cfg(not(test))]
const MALLOC_ALIGN: usize = 16;

#[cfg(not(test))]
// SAFETY: every method returns memory from the C allocator with at least the layout's size and
// alignment (posix_memalign above malloc's natural alignment), or null on failure.
unsafe impl core::alloc::GlobalAlloc for Malloc {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: plain malloc; layout.size() is non-zero per GlobalAlloc's contract.
            return unsafe { libc::malloc(layout.size()) }.cast();
        }
        let mut p = core::ptr::null_mut();
        let align = layout.align().max(core::mem::size_of::<usize>());
        // SAFETY: align is a power of two and a multiple of sizeof(void *), as required.
        if unsafe { libc::posix_memalign(&mut p, align, layout.size()) } != 0 {
            return core::ptr::null_mut();
        }
        p.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: calloc zeroes what it returns.
            return unsafe { libc::calloc(1, layout.size()) }.cast();
        }
        // SAFETY: forwarded with the caller's layout; zeroed below if it succeeded.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: p points to layout.size() writable bytes.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: core::alloc::Layout) {
        // SAFETY: ptr came from malloc, calloc, realloc or posix_memalign, all freed by free.
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        layout: core::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= new_size {
            // SAFETY: ptr came from this allocator; realloc keeps malloc's alignment.
            return unsafe { libc::realloc(ptr.cast(), new_size) }.cast();
        }
        // SAFETY: the new layout is valid per GlobalAlloc::realloc's contract.
        let new_layout =
            unsafe { core::alloc::Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded; on success both blocks are live and at least min(size) long.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both point to at least min(old, new) bytes and do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: Malloc = Malloc;

/// A bug: say where on stderr in one write(2), then abort (no unwinding, `panic = "abort"`).
/// Formats into a fixed buffer: the panic may be an allocation failure.
#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    struct Buf {
        bytes: [u8; 512],
        len: usize,
    }
    impl fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = self.bytes.len() - 1 - self.len;
            let n = s.len().min(room);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut buf = Buf {
        bytes: [0; 512],
        len: 0,
    };
    let _ = fmt::write(
        &mut buf,
        format_args!("config-reloader: internal error: {}", info.message()),
    );
    if let Some(at) = info.location() {
        let _ = fmt::write(&mut buf, format_args!(" at {}:{}", at.file(), at.line()));
    }
    buf.bytes[buf.len] = b'\n';
    // SAFETY: the buffer holds len + 1 initialised bytes; abort never returns.
    unsafe {
        libc::write(2, buf.bytes.as_ptr().cast(), buf.len + 1);
        libc::abort()
    }
}

/// Never called. The precompiled `core` and `alloc` were built with `panic = "unwind"`, so some
/// of their functions keep landing pads that name `_Unwind_Resume` and `rust_eh_personality`;
/// the linker needs the symbols even though, with `panic = "abort"` and no C++ in the process,
/// nothing ever unwinds. Defining them here avoids linking libunwind (≈ 50 KB) for dead code.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    // SAFETY: abort takes nothing and never returns.
    unsafe { libc::abort() }
}

/// Never called; see [`_Unwind_Resume`].
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
