//! What this test process costs, read from `/proc/self` (Linux): resident memory and CPU time. The servers
//! under test run in-process, so resource tests measure them here; each such test lives in a test binary
//! of its own so that other tests do not disturb the figures.

use std::time::Duration;

/// Clock ticks per second of the `utime`/`stime` fields of `/proc/self/stat` (`USER_HZ`, which the kernel
/// fixes at 100 for user space on every architecture Linux supports, see proc(5)).
const USER_HZ: u64 = 100;

/// Resident set size now (`VmRSS` in `/proc/self/status`), in bytes.
pub fn rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Peak resident set size so far (`VmHWM` in `/proc/self/status`), in bytes.
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// User plus system CPU time consumed by every thread of this process so far (fields 14 and 15 of
/// `/proc/self/stat`, the same figures `getrusage(RUSAGE_SELF)` reports).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) is in parentheses and may contain spaces: count fields after it.
    let after_name = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so field n is at index n - 3.
    let ticks: u64 =
        fields[14 - 3].parse::<u64>().unwrap() + fields[15 - 3].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / USER_HZ)
}
