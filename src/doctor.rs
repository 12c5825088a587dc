//! `corestream doctor`: checks a machine before corestream runs on it, each
//! with pass / warn / fail and, when it is not a pass, the exact fix.
//! `corestream start` runs the fatal subset (`Check::fatal`) and refuses to
//! start with the same sentence rather than a backtrace.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it, when the status is not a pass.
    pub fix: Option<String>,
    /// Whether `start` refuses to run when this check fails.
    pub fatal: bool,
}

fn check(name: &'static str, fatal: bool, status: Status, detail: String, fix: Option<String>) -> Check {
    Check {
        name,
        status,
        detail,
        fix: if status == Status::Pass { None } else { fix },
        fatal,
    }
}

/// Bytes of locked memory one shard's executor needs (glommio pins its
/// rings). With more (deploy/: unlimited), glommio also registers the
/// shard's 32 MiB I/O pool with each of its three rings, which spares the
/// kernel pinning pages per read; without, the pool is used unregistered.
pub const MEMLOCK_PER_SHARD: u64 = 16 << 20;

pub fn run_all(config: &Config) -> Vec<Check> {
    let shards = config.shard_cores().len();
    vec![
        io_uring_sysctl(),
        io_uring_ring(),
        memlock(shards),
        open_files(config),
        cpus(shards),
        data_dir(&config.data_dir),
        disk_space(&config.data_dir),
        clock(),
    ]
    .into_iter()
    .chain(certificates(config))
    .chain(authorizer(config))
    .collect()
}

/// With the authorizer on: someone must be able to manage ACLs, and an
/// anonymous super user must not be reachable from the network.
fn authorizer(config: &Config) -> Option<Check> {
    use crate::security::tls::ClientAuth;
    use crate::security::SecurityProtocol;
    let a = &config.authorizer;
    if !a.enabled {
        return None;
    }
    const NAME: &str = "authorizer";
    if a.super_users.is_empty() {
        return Some(check(
            NAME,
            false,
            Status::Warn,
            "on, with no super user: only principals already allowed ALTER on the cluster can change ACLs".into(),
            Some("list an operator principal in authorizer.super_users, e.g. [\"User:admin\"]".into()),
        ));
    }
    let anonymous_super = a.super_users.iter().any(|p| p == crate::security::acl::ANONYMOUS);
    // Where an unauthenticated client is User:ANONYMOUS: PLAINTEXT, and SSL
    // unless a client certificate is required.
    let open = config.listeners().unwrap_or_default().into_iter().find(|l| {
        let anonymous = match l.protocol {
            SecurityProtocol::Plaintext => true,
            SecurityProtocol::Ssl => config.ssl.client_auth != ClientAuth::Required,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => false,
        };
        anonymous && !l.bind.ip().is_loopback()
    });
    match open.filter(|_| anonymous_super) {
        Some(l) => Some(check(
            NAME,
            false,
            Status::Warn,
            format!(
                "User:ANONYMOUS is a super user and listener {} binds {}: anyone who reaches it may do everything",
                l.name, l.bind
            ),
            Some("bind that listener to 127.0.0.1, or name an authenticated operator in super_users".into()),
        )),
        None => Some(check(
            NAME,
            false,
            Status::Pass,
            format!("on; super users: {}", a.super_users.join(", ")),
            None,
        )),
    }
}

/// The checks whose failure stops `start`.
pub fn fatal_failures(config: &Config) -> Vec<Check> {
    let shards = config.shard_cores().len();
    [io_uring_ring(), memlock(shards), data_dir(&config.data_dir)]
        .into_iter()
        .filter(|c| c.status == Status::Fail)
        .collect()
}

fn io_uring_sysctl() -> Check {
    let name = "io_uring sysctl";
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Err(_) => check(name, false, Status::Pass, "kernel.io_uring_disabled not present (older kernel): io_uring allowed".into(), None),
        Ok(v) => match v.trim() {
            "0" => check(name, false, Status::Pass, "kernel.io_uring_disabled = 0".into(), None),
            other => check(
                name,
                false,
                if other == "2" { Status::Fail } else { Status::Warn },
                format!("kernel.io_uring_disabled = {other}: io_uring is {}", if other == "2" { "off for everyone" } else { "limited to privileged users and io_uring_group" }),
                Some("sysctl -w kernel.io_uring_disabled=0, and persist it: echo 'kernel.io_uring_disabled = 0' > /etc/sysctl.d/60-corestream.conf".into()),
            ),
        },
    }
}

fn io_uring_ring() -> Check {
    use io_uring::opcode;
    let name = "io_uring";
    let fix = "corestream needs Linux 5.8 or newer with io_uring allowed for this user (kernel.io_uring_disabled = 0, and no seccomp profile blocking io_uring_setup, e.g. Docker's default)".to_string();
    let ring = match io_uring::IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            return check(
                name,
                true,
                Status::Fail,
                format!("cannot set up a ring: {e}"),
                Some(fix),
            )
        }
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return check(
            name,
            true,
            Status::Fail,
            format!("cannot probe opcodes: {e}"),
            Some(fix),
        );
    }
    let needed = [
        ("read", opcode::Read::CODE),
        ("write", opcode::Write::CODE),
        ("read_fixed", opcode::ReadFixed::CODE),
        ("write_fixed", opcode::WriteFixed::CODE),
        ("fsync", opcode::Fsync::CODE),
        ("fallocate", opcode::Fallocate::CODE),
        ("openat", opcode::OpenAt::CODE),
        ("close", opcode::Close::CODE),
        ("statx", opcode::Statx::CODE),
        ("accept", opcode::Accept::CODE),
        ("connect", opcode::Connect::CODE),
        ("send", opcode::Send::CODE),
        ("recv", opcode::Recv::CODE),
        ("poll_add", opcode::PollAdd::CODE),
        ("timeout", opcode::Timeout::CODE),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, c)| !probe.is_supported(*c))
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        check(
            name,
            true,
            Status::Pass,
            format!(
                "ring set up; all {} opcodes corestream uses are supported",
                needed.len()
            ),
            None,
        )
    } else {
        check(
            name,
            true,
            Status::Fail,
            format!("the kernel lacks io_uring opcodes: {}", missing.join(", ")),
            Some(fix),
        )
    }
}

fn rlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(resource, &mut r) };
    (r.rlim_cur, r.rlim_max)
}

fn has_ipc_lock() -> bool {
    // CAP_IPC_LOCK (bit 14) in the effective set lifts RLIMIT_MEMLOCK.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapEff:"))
                .map(|l| l[7..].trim().to_string())
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

fn fmt_limit(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} KiB", v / 1024)
    }
}

fn memlock(shards: usize) -> Check {
    let name = "locked memory";
    let needed = shards as u64 * MEMLOCK_PER_SHARD;
    // `start` raises the soft limit to the hard one itself, so the hard limit counts.
    let (soft, hard) = rlimit(libc::RLIMIT_MEMLOCK);
    if has_ipc_lock() {
        return check(
            name,
            true,
            Status::Pass,
            format!("CAP_IPC_LOCK held: the limit ({}) does not apply", fmt_limit(soft)),
            None,
        );
    }
    if hard == libc::RLIM_INFINITY || hard >= needed {
        return check(
            name,
            true,
            Status::Pass,
            format!("hard limit {} covers {shards} shards x 16 MiB", fmt_limit(hard)),
            None,
        );
    }
    check(
        name,
        true,
        Status::Fail,
        format!("RLIMIT_MEMLOCK is {} (hard {}), but {shards} shards need {} KiB: glommio pins its I/O memory", fmt_limit(soft), fmt_limit(hard), needed / 1024),
        Some("systemd: LimitMEMLOCK=infinity in the unit (deploy/corestream.service); a shell: ulimit -l unlimited; or in /etc/security/limits.conf: 'corestream - memlock unlimited'".into()),
    )
}

fn open_files(config: &Config) -> Check {
    let name = "open files";
    let (soft, hard) = rlimit(libc::RLIMIT_NOFILE);
    let want = (config.limits.max_connections_per_shard * config.shard_cores().len()) as u64 + 1024;
    let usable = if hard == libc::RLIM_INFINITY {
        hard
    } else {
        hard.max(soft)
    };
    let status = if usable >= want { Status::Pass } else { Status::Warn };
    check(
        name,
        false,
        status,
        format!(
            "RLIMIT_NOFILE soft {soft}, hard {hard}; limits.max_connections_per_shard x shards + files wants {want}"
        ),
        Some(
            "LimitNOFILE=1048576 in the systemd unit, or 'corestream - nofile 1048576' in /etc/security/limits.conf"
                .into(),
        ),
    )
}

fn cpus(shards: usize) -> Check {
    let name = "cpus";
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let isolated = std::fs::read_to_string("/sys/devices/system/cpu/isolated")
        .unwrap_or_default()
        .trim()
        .to_string();
    let iso = if isolated.is_empty() {
        "none isolated".to_string()
    } else {
        format!("isolated: {isolated}")
    };
    if shards > online {
        return check(
            name,
            false,
            Status::Warn,
            format!("{shards} shards on {online} online cores ({iso}): shards share cores"),
            Some(format!(
                "run at most {online} shards (--shards or `shards` in the config)"
            )),
        );
    }
    check(
        name,
        false,
        Status::Pass,
        format!("{shards} shards on {online} online cores ({iso})"),
        None,
    )
}

/// f_type values from statfs(2).
fn fs_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x6969 => "nfs",
        0x2FC1_2FC1 => "zfs",
        _ => "other",
    }
}

fn statfs(path: &Path) -> Option<libc::statfs> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into the struct we pass; `c` is a valid C string.
    (unsafe { libc::statfs(c.as_ptr(), &mut s) } == 0).then_some(s)
}

/// The data dir, or its nearest existing parent (doctor creates nothing).
fn existing(path: &Path) -> &Path {
    let mut p = path;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return Path::new("."),
        }
    }
    p
}

fn data_dir(dir: &Path) -> Check {
    let name = "data dir";
    let at = existing(dir);
    let fs = statfs(at).map_or("unknown", |s| fs_name(s.f_type));
    let fix = "put data_dir on a local ext4 or xfs file system (not tmpfs, overlayfs or NFS), writable by the corestream user";
    if fs == "tmpfs" {
        return check(
            name,
            true,
            Status::Fail,
            format!(
                "{} is on tmpfs: it lives in memory, so acknowledged data would not survive a reboot or power cut",
                dir.display()
            ),
            Some(fix.into()),
        );
    }
    let probe = at.join(format!(".corestream-doctor-{}", std::process::id()));
    let result = o_direct_write(&probe);
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => check(
            name,
            true,
            Status::Pass,
            format!("{} ({fs}): writable with O_DIRECT", dir.display()),
            None,
        ),
        Err(e) => check(
            name,
            true,
            Status::Fail,
            format!(
                "{} ({fs}, checked at {}): an O_DIRECT write failed: {e}",
                dir.display(),
                at.display()
            ),
            Some(fix.into()),
        ),
    }
}

fn o_direct_write(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
    // SAFETY: an aligned, zeroed allocation, freed below; O_DIRECT needs the alignment.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    let buf = unsafe { std::slice::from_raw_parts(ptr, 4096) };
    let r = f.write_all(buf).and_then(|_| f.sync_data());
    unsafe { std::alloc::dealloc(ptr, layout) };
    r
}

fn disk_space(dir: &Path) -> Check {
    let name = "free disk";
    let Some(s) = statfs(existing(dir)) else {
        return check(
            name,
            false,
            Status::Warn,
            format!("cannot statfs {}", dir.display()),
            Some("check the data_dir path".into()),
        );
    };
    let free = s.f_bavail * s.f_bsize as u64;
    let gib = free as f64 / (1u64 << 30) as f64;
    let status = if free < (1 << 30) {
        Status::Fail
    } else if free < (10 << 30) {
        Status::Warn
    } else {
        Status::Pass
    };
    check(
        name,
        false,
        status,
        format!("{gib:.1} GiB free for {}", dir.display()),
        Some(
            "free space or point data_dir at a larger disk: WAL segments are preallocated (wal.segment_bytes each)"
                .into(),
        ),
    )
}

fn clock() -> Check {
    let name = "clock sync";
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex with modes = 0 only reads the kernel's clock state.
    let state = unsafe { libc::adjtimex(&mut t) };
    if state == libc::TIME_ERROR || t.status & libc::STA_UNSYNC != 0 {
        return check(
            name,
            false,
            Status::Warn,
            "the kernel reports the clock as not synchronized".into(),
            Some("run a time daemon (chrony or systemd-timesyncd): timestamps and time-based retention follow this clock".into()),
        );
    }
    check(
        name,
        false,
        Status::Pass,
        format!("synchronized (estimated error {} us)", t.esterror),
        None,
    )
}

/// Certificates warn this long before they expire.
const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The TLS certificates the config names (listeners', the Raft
/// transport's): readable, their key belongs to them, valid now and for
/// the next 30 days, the key file not readable by others, and a Raft
/// certificate naming this node.
fn certificates(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    if let (Some(cert), Some(key)) = (&config.ssl.certificate_chain_file, &config.ssl.private_key_file) {
        out.push(certificate("tls certificate (listeners)", cert, key, None));
    }
    if let Some(t) = &config.cluster.tls {
        let name = crate::security::tls::peer_name(config.node_id);
        out.push(certificate(
            "tls certificate (raft)",
            &t.certificate_chain_file,
            &t.private_key_file,
            Some(name),
        ));
    }
    out
}

fn certificate(name: &'static str, cert: &Path, key: &Path, must_name: Option<String>) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let fail = |detail: String, fix: String| check(name, false, Status::Fail, detail, Some(fix));
    if let Err(e) = crate::security::tls::load_key(cert, key) {
        return fail(
            e.to_string(),
            "point the config at a PEM certificate chain and its own private key".into(),
        );
    }
    let Ok(chain) = crate::security::tls::read_chain(cert) else {
        return fail(format!("{} does not read", cert.display()), "check the file".into());
    };
    let Ok((_, leaf)) = x509_parser::parse_x509_certificate(&chain[0]) else {
        return fail(
            format!("{} is not an X.509 certificate", cert.display()),
            "check the file".into(),
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (from, until) = (
        leaf.validity().not_before.timestamp(),
        leaf.validity().not_after.timestamp(),
    );
    let subject = leaf.subject().to_string();
    let renew = format!("renew {} (and its key) and put the new files in place: new connections get them within 10 s, without a restart", cert.display());
    if now < from {
        return fail(
            format!(
                "{subject} ({}) is not valid yet: from {}",
                cert.display(),
                leaf.validity().not_before
            ),
            "check the clocks, or the certificate's start date".into(),
        );
    }
    if now >= until {
        return fail(
            format!(
                "{subject} ({}) expired on {}",
                cert.display(),
                leaf.validity().not_after
            ),
            renew,
        );
    }
    if let Some(node) = &must_name {
        let names = rustls::pki_types::ServerName::try_from(node.as_str())
            .ok()
            .is_some_and(|n| {
                webpki::EndEntityCert::try_from(&chain[0]).is_ok_and(|c| c.verify_is_valid_for_subject_name(&n).is_ok())
            });
        if !names {
            return fail(
                format!(
                    "{subject} ({}) does not hold the DNS name {node}: peers will refuse this node",
                    cert.display()
                ),
                format!("issue this node's certificate with subjectAltName=DNS:{node}"),
            );
        }
    }
    let left = std::time::Duration::from_secs((until - now) as u64);
    let days = left.as_secs() / 86_400;
    let open_key = std::fs::metadata(key)
        .map(|m| m.permissions().mode() & 0o077)
        .unwrap_or(0);
    if open_key != 0 {
        return check(
            name,
            false,
            Status::Warn,
            format!(
                "{} can be read by other users (mode {:o})",
                key.display(),
                open_key | 0o600
            ),
            Some(format!("chmod 600 {}", key.display())),
        );
    }
    if left < EXPIRY_WARNING {
        return check(
            name,
            false,
            Status::Warn,
            format!("{subject} expires in {days} days ({})", leaf.validity().not_after),
            Some(renew),
        );
    }
    check(
        name,
        false,
        Status::Pass,
        format!("{subject}, valid for {days} more days, its key matches"),
        None,
    )
}

pub fn print(checks: &[Check]) {
    for c in checks {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("{tag}  {:<16} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("      {:<16} fix: {fix}", "");
        }
    }
}
