//! Reading the server's CPU time and memory from /proc.

use std::fs;

fn read(pid: u32, file: &str) -> Result<String, String> {
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .map_err(|e| format!("reading /proc/{pid}/{file} (has the server exited?): {e}"))
}

/// Ticks per second of utime/stime.
fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The process's user + system CPU time so far (all threads), in microseconds.
pub fn cpu_us(pid: u32) -> Result<u64, String> {
    cpu_split_us(pid).map(|(user, system)| user + system)
}

/// The process's (user, system) CPU time so far (all threads), in microseconds: user time
/// is what the server's own code costs, system time mostly the kernel's TCP work.
pub fn cpu_split_us(pid: u32) -> Result<(u64, u64), String> {
    let s = read(pid, "stat")?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14 and stime field 15.
    let field = |i: usize| -> Result<u64, String> {
        f.get(i - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {i}"))
    };
    let tck = clk_tck();
    Ok((field(14)? * 1_000_000 / tck, field(15)? * 1_000_000 / tck))
}

/// The process's resident set size, in KiB.
pub fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let s = read(pid, "status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status: no VmRSS line"))
}
