//! This process's CPU time, memory, descriptors and start time, from /proc/self.

/// What `/metrics` reports about the process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProcessFigures {
    pub(crate) cpu_seconds: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) open_fds: u64,
    pub(crate) max_fds: u64,
    pub(crate) start_time_seconds: u64,
}

pub(crate) fn read_self() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let boot_unix = crate::agent::now_ms() as f64 / 1000.0
        - uptime.split_whitespace().next()?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads system configuration.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let fields = parse_stat(&stat)?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    Some(ProcessFigures {
        cpu_seconds: (fields.utime + fields.stime) as f64 / ticks,
        rss_bytes: fields.rss_pages * page,
        open_fds,
        max_fds: max_open_files(&limits).unwrap_or(0),
        start_time_seconds: (boot_unix + fields.starttime as f64 / ticks) as u64,
    })
}

struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
    rss_pages: u64,
}

/// `/proc/PID/stat`: the command name may hold spaces and parentheses, so fields are counted
/// after the last `)` (field 3 onwards).
fn parse_stat(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        rss_pages: field(24)?,
    })
}

/// The soft "Max open files" limit of `/proc/PID/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis, as the kernel prints it.
        let stat = "4242 (stack ring) x) S 1 4242 4242 0 -1 4194560 520 0 0 0 150 25 0 0 20 0 3 0 9000 12345678 1600 18446744073709551615";
        let f = parse_stat(stat).unwrap();
        assert_eq!(
            (f.utime, f.stime, f.starttime, f.rss_pages),
            (150, 25, 9000, 1600)
        );
        assert!(parse_stat("garbage").is_none());
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            16384                524288               files\n";
        assert_eq!(max_open_files(limits), Some(16384));
    }

    #[test]
    fn this_process_reads_itself() {
        let p = read_self().unwrap();
        assert!(p.rss_bytes > 0 && p.open_fds > 0 && p.max_fds > 0, "{p:?}");
        assert!(p.start_time_seconds > 1_600_000_000, "{p:?}");
    }
}
