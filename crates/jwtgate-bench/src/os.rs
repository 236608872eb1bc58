//! What the bench asks of the operating system (Linux): CPU pinning through `taskset`, and CPU
//! time and resident memory of a process from `/proc`. All degrade to "unknown" elsewhere.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Whether `taskset` can be run.
pub fn have_taskset() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A command that runs `program` on the CPUs in `cpus` (a `taskset -c` list such as `0` or
/// `0-1`); plain `program` without.
pub fn pinned_command(program: &std::path::Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// This process's CPU affinity as a `taskset -c` list (e.g. `0-3`), if `taskset` can tell.
pub fn own_cpus() -> Option<String> {
    let out = Command::new("taskset")
        .args(["-c", "-p", &std::process::id().to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    // "pid 42's current affinity list: 0-3"
    let list = text.rsplit(": ").next()?.trim();
    (out.status.success() && !list.is_empty()).then(|| list.to_owned())
}

/// Pins every thread of this process (and the threads it starts later) to `cpu`.
pub fn pin_self(cpu: usize) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`, else the usual 100).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// User plus system CPU time process `pid` has used so far (all its threads), at clock-tick
/// resolution (usually 10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 0, so utime (14th field of the line) is 11 and stime is 12.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000 / clock_ticks()),
    ))
}

/// Resident set size of process `pid`, KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `cpus` as taskset's list: `0,1`.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                std::hint::black_box(t.elapsed());
            }
            assert!(cpu_time(std::process::id()).is_some_and(|d| d > Duration::ZERO));
        }
    }

    #[test]
    fn reads_own_rss_and_sees_it_grow() {
        if std::path::Path::new("/proc/self/status").exists() {
            let before = rss_kib(std::process::id()).unwrap();
            let block = vec![1u8; 64 << 20];
            let after = rss_kib(std::process::id()).unwrap();
            assert!(after >= before + 60 * 1024, "{before} KiB → {after} KiB");
            drop(std::hint::black_box(block));
        }
    }
}
